%% Start module of the original-Bullet benchmark peer (bench/peers/erlang).
%%
%%   erl -noshell -pa ... -s bench_start start Port Mode
%%
%% Port is an atom such as '8080'; Mode is push | echo (default echo).
%% Listens on 127.0.0.1:Port, route /bullet -> bullet_handler
%% [{handler, bench_stream}], then blocks forever.
-module(bench_start).

-export([start/0]).
-export([start/1]).

start() ->
	start(['8080', echo]).

start([PortArg]) ->
	start([PortArg, echo]);
start([PortArg, ModeArg | _]) ->
	Port = to_int(PortArg),
	Push = case to_atom(ModeArg) of
		push -> true;
		echo -> false;
		Other -> erlang:error({bad_mode, Other})
	end,
	persistent_term:put({bench_stream, push}, Push),
	{ok, _} = application:ensure_all_started(crypto),
	{ok, _} = application:ensure_all_started(ranch),
	{ok, _} = application:ensure_all_started(cowlib),
	{ok, _} = application:ensure_all_started(cowboy),
	Dispatch = cowboy_router:compile([
		{'_', [
			{"/bullet", bullet_handler, [{handler, bench_stream}]}
		]}
	]),
	{ok, _} = cowboy:start_http(http, 100,
		[{port, Port}, {ip, {127,0,0,1}}, {max_connections, 100000}],
		[{env, [{dispatch, Dispatch}]}]),
	%% The runner (bench/run.py) waits for a line starting "listening on ".
	io:format("listening on http://127.0.0.1:~b (original Bullet, mode ~s, pid ~s)~n",
		[Port, case Push of true -> push; false -> echo end, os:getpid()]),
	receive after infinity -> ok end.

to_int(A) when is_atom(A) -> list_to_integer(atom_to_list(A));
to_int(L) when is_list(L) -> list_to_integer(L);
to_int(I) when is_integer(I) -> I.

to_atom(A) when is_atom(A) -> A;
to_atom(L) when is_list(L) -> list_to_atom(L).
