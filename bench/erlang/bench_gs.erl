%% bench_gs -- the gen_server used by the Erlang half of the benchmark suite.
%%
%% A plain counter server:
%%   * gen_server:call(S, {add, N})  -> replies with the new counter value
%%   * gen_server:cast(S, {add, N})  -> adds N, no reply
%%
%% It serves two roles:
%%   * the server of the gen_server_call_* / gen_server_cast_ns benchmarks
%%     (start_link/0, unregistered), and
%%   * the permanent worker of the supervisor benchmarks (start_link/1, which
%%     registers the process locally under the given name, i.e.
%%     gen_server:start_link({local, Name}, ...)), see bench_sup.erl.
-module(bench_gs).
-behaviour(gen_server).

-export([start_link/0, start_link/1]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2]).

%% Unregistered counter server.
start_link() ->
    gen_server:start_link(?MODULE, 0, []).

%% Counter server registered locally as Name (supervisor worker).
start_link(Name) ->
    gen_server:start_link({local, Name}, ?MODULE, 0, []).

init(Counter) ->
    {ok, Counter}.

handle_call({add, N}, _From, Counter) ->
    New = Counter + N,
    {reply, New, New};
%% supervised_pool's work: Steps xorshift32 steps from X.
handle_call({work, X, Steps}, _From, Counter) ->
    {reply, otp_bench:xorshift_n(X, Steps), Counter}.

handle_cast({add, N}, Counter) ->
    {noreply, Counter + N}.

handle_info(_Msg, Counter) ->
    {noreply, Counter}.
