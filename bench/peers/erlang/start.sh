#!/bin/sh
# Start the original-Bullet peer (ninenines/bullet on cowboy 1.0.4), as built
# by build.sh, the way bench/run.py starts every server:
#
#   bench/peers/erlang/start.sh --host 127.0.0.1 --port P [--push]
#
# /bullet serves WebSocket, long-poll GET, EventSource GET and POST through
# bullet_handler with bench_stream: every message is echoed; with --push every
# WebSocket and event stream gets an endless run of 100-byte messages instead,
# and every poll one at once (POSTs are still echoed). It listens on 127.0.0.1 only (--host is
# accepted for the runner's sake and must be 127.0.0.1).
#
# One scheduler (+S 1:1), as in the comparison the project was asked to make.
# The script exec's erl, which exec's beam.smp: this process becomes the
# server, so the runner's pid, CPU pinning and /proc figures are the VM's.
# ERLANG_BULLET_DIR is build.sh's OUT_DIR (default ~/.cache/bullet_py/erlang_bullet).
set -eu

PORT=
MODE=echo
while [ $# -gt 0 ]; do
	case $1 in
		--port) PORT=$2; shift 2 ;;
		--host)
			[ "$2" = 127.0.0.1 ] || { echo "start.sh: listens on 127.0.0.1 only" >&2; exit 2; }
			shift 2 ;;
		--push) MODE=push; shift ;;
		*) echo "start.sh: unknown argument $1" >&2; exit 2 ;;
	esac
done
[ -n "$PORT" ] || { echo "usage: start.sh --host 127.0.0.1 --port P [--push]" >&2; exit 2; }

LIB=${ERLANG_BULLET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/bullet_py/erlang_bullet}/lib
for app in cowlib ranch cowboy bullet bench; do
	[ -d "$LIB/$app/ebin" ] || { echo "start.sh: no $LIB/$app/ebin: run build.sh" >&2; exit 1; }
done

# The idle workloads open thousands of sockets.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

exec erl +S 1:1 -noshell \
	-pa "$LIB/cowlib/ebin" "$LIB/ranch/ebin" "$LIB/cowboy/ebin" "$LIB/bullet/ebin" \
	"$LIB/bench/ebin" \
	-s bench_start start "$PORT" "$MODE"
