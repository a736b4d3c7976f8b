#!/bin/sh
# Compile the original-Bullet peer with plain erlc (no rebar, no erlang.mk).
#
#   bench/peers/erlang/build.sh SRC_DIR [OUT_DIR]
#
# SRC_DIR holds one checkout per library, at the versions the project replaced:
#   SRC_DIR/cowlib  ninenines/cowlib 1.0.1
#   SRC_DIR/ranch   ninenines/ranch  1.1.0
#   SRC_DIR/cowboy  ninenines/cowboy 1.0.4
#   SRC_DIR/bullet  ninenines/bullet master (0.4.1; src/ as at 0f9eedf)
# (setup.sh fetches them). They stay outside this repository: third-party code.
#
# OUT_DIR (default: $ERLANG_BULLET_DIR, else ~/.cache/bullet_py/erlang_bullet)
# receives lib/<app>/ebin for the four libraries and for this directory's
# bench_start.erl and bench_stream.erl (the benchmark's own handler).
# bench/run.py finds the peer there. Needs Erlang/OTP (Debian: erlang-nox
# erlang-dev); OTP 25 compiles these sources unchanged, with warnings only.
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
SRC=${1:?usage: build.sh SRC_DIR [OUT_DIR]}
OUT=${2:-${ERLANG_BULLET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/bullet_py/erlang_bullet}}
SRC=$(cd "$SRC" && pwd)
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
LIB=$OUT/lib

command -v erlc >/dev/null || {
	echo "build.sh: erlc not found (Debian: apt-get install erlang-nox erlang-dev)" >&2
	exit 1
}
for app in cowlib ranch cowboy bullet; do
	[ -d "$SRC/$app/src" ] || { echo "build.sh: no $SRC/$app/src (see setup.sh)" >&2; exit 1; }
done

# The .app.src files list no modules and some carry vsn "git": write
# ebin/APP.app with the compiled modules and a real version.
write_app() { # write_app APP VERSION
	erl -noshell -eval "
		App = $1,
		Ebin = \"$LIB/$1/ebin\",
		{ok, [{application, App, Keys0}]} =
			file:consult(\"$SRC/$1/src/$1.app.src\"),
		Mods = [list_to_atom(filename:basename(F, \".beam\"))
			|| F <- filelib:wildcard(Ebin ++ \"/*.beam\")],
		Vsn = case proplists:get_value(vsn, Keys0) of
			V when is_list(V), V =/= \"\", V =/= \"git\" -> V;
			_ -> \"$2\"
		end,
		Keys = lists:keystore(modules, 1,
			lists:keystore(vsn, 1, Keys0, {vsn, Vsn}), {modules, Mods}),
		ok = file:write_file(Ebin ++ \"/$1.app\",
			io_lib:format(\"~p.~n\", [{application, App, Keys}])),
		halt()."
}

compile() { # compile APP VERSION [erlc options]
	app=$1 vsn=$2
	shift 2
	echo "build.sh: $app $vsn"
	rm -rf "${LIB:?}/$app"
	mkdir -p "$LIB/$app/ebin"
	erlc +debug_info "$@" -o "$LIB/$app/ebin" "$SRC/$app"/src/*.erl
	write_app "$app" "$vsn"
}

compile cowlib 1.0.1 -I "$SRC/cowlib/include"
# cowboy reaches cowlib's headers through include_lib("cowlib/include/..."),
# which -I "$LIB" resolves once they sit next to cowlib's ebin.
cp -r "$SRC/cowlib/include" "$LIB/cowlib/include"
compile ranch 1.1.0
compile cowboy 1.0.4 -pa "$LIB/cowlib/ebin" -pa "$LIB/ranch/ebin" -I "$LIB"
compile bullet 0.4.1 -pa "$LIB/cowboy/ebin"

echo "build.sh: bench (bench_start, bench_stream)"
rm -rf "$LIB/bench"
mkdir -p "$LIB/bench/ebin"
erlc +debug_info -pa "$LIB/cowboy/ebin" -o "$LIB/bench/ebin" \
	"$HERE/bench_start.erl" "$HERE/bench_stream.erl"

echo "build.sh: done; bench/run.py uses it with ERLANG_BULLET_DIR=$OUT"
