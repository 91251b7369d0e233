%% bench_sup -- the supervisor used by the Erlang supervisor benchmarks.
%%
%% start_link(Strategy, Intensity, Period, Names) starts a supervisor with the
%% given restart strategy / maximum restart intensity and one permanent
%% bench_gs worker per name in Names; each worker registers itself locally
%% under its name (gen_server:start_link({local, Name}, ...)), so the
%% benchmark can observe a restart by polling whereis(Name).
%%
%% Workers use the default worker shutdown (5000 ms).  They do not trap exits,
%% so a shutdown (rest_for_one terminating the younger siblings) takes effect
%% immediately; the timeout is never reached.
-module(bench_sup).
-behaviour(supervisor).

-export([start_link/4, stop/1]).
-export([init/1]).

start_link(Strategy, Intensity, Period, Names) ->
    supervisor:start_link(?MODULE, {Strategy, Intensity, Period, Names}).

%% Stop a supervisor started (and linked) by the calling process without
%% taking the caller down with it.
stop(Sup) ->
    unlink(Sup),
    Ref = monitor(process, Sup),
    exit(Sup, shutdown),
    receive {'DOWN', Ref, process, Sup, _} -> ok end.

init({Strategy, Intensity, Period, Names}) ->
    SupFlags = #{strategy => Strategy,
                 intensity => Intensity,
                 period => Period},
    Children = [#{id => Name,
                  start => {bench_gs, start_link, [Name]},
                  restart => permanent,
                  shutdown => 5000,
                  type => worker,
                  modules => [bench_gs]}
                || Name <- Names],
    {ok, {SupFlags, Children}}.
