#!/bin/sh
# Fetch the original Bullet and the Cowboy it ran on, then build the peer.
#
#   bench/peers/erlang/setup.sh [SRC_DIR [OUT_DIR]]
#
# SRC_DIR (default: ~/.cache/bullet_py/erlang_bullet_src) gets one directory
# per library, exported from its public git repository at the tag the project
# replaced; a library already there is left alone, so a copy obtained some
# other way (git archive of a mirror, a tarball) can be put in place first:
#   git --git-dir=cowlib.git archive 1.0.1 | tar -x -C SRC_DIR/cowlib
# Then build.sh SRC_DIR OUT_DIR compiles it (OUT_DIR: see build.sh).
#
# ERLANG_BULLET_GIT replaces https://github.com/ninenines, for a mirror holding
# cowlib.git, ranch.git, cowboy.git and bullet.git.
#
# Needs git, and Erlang/OTP with its headers: on Debian or Ubuntu,
#   apt-get install erlang-nox erlang-dev
# Afterwards `python bench/run.py` includes the peer as system "erlang"
# (export ERLANG_BULLET_DIR=OUT_DIR if you chose another OUT_DIR).
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/bullet_py
GIT=${ERLANG_BULLET_GIT:-https://github.com/ninenines}
SRC=${1:-$CACHE/erlang_bullet_src}
mkdir -p "$SRC"

fetch() { # fetch NAME REF
	if [ -d "$SRC/$1/src" ]; then
		echo "setup.sh: $SRC/$1 already there"
		return
	fi
	tmp=$(mktemp -d)
	git clone --quiet "$GIT/$1.git" "$tmp/$1"
	mkdir -p "$SRC/$1"
	git -C "$tmp/$1" archive "$2" | tar -x -C "$SRC/$1"
	rm -rf "$tmp"
	echo "setup.sh: $1 $2 -> $SRC/$1"
}

fetch cowlib 1.0.1
fetch ranch 1.1.0
fetch cowboy 1.0.4
# Bullet's last commit only marks the project discontinued; its src/ is the
# one of 0f9eedf ("Update cowboy dependency to 1.0.4"), version 0.4.1.
fetch bullet 0f9eedf

exec "$HERE/build.sh" "$SRC" ${2:+"$2"}
