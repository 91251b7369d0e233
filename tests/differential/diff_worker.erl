%% The worker every scenario uses: a gen_server that traps exits (so that
%% terminate/2 runs on shutdown) and whose init follows the scenario's plan.
-module(diff_worker).
-behaviour(gen_server).
-export([start_link/2, dyn_start_link/2]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2, terminate/2]).

start_link(Name, Plan) -> gen_server:start_link(?MODULE, {Name, Plan}, []).

%% A simple_one_for_one template appends the instance name.
dyn_start_link(Plan, Name) -> start_link(Name, Plan).

init({Name, Plan}) ->
    process_flag(trap_exit, true),
    N = ets:update_counter(diff_tab, {count, Name}, 1, {{count, Name}, 0}),
    Outcome = case N =< length(Plan) of
                  true -> lists:nth(N, Plan);
                  false -> ok
              end,
    diff_player:event(["init ", Name, " ", atom_to_list(Outcome)]),
    case Outcome of
        ok -> ets:insert(diff_tab, [{{pid, self()}, Name}, {{cur, Name}, self()}]), {ok, Name};
        ignore -> ignore;
        fail -> {stop, init_fail}
    end.

handle_call(_Req, _From, Name) -> {reply, ok, Name}.

handle_cast({stop, Reason}, Name) -> {stop, Reason, Name};
handle_cast(raise, _Name) -> erlang:error(oops).

handle_info(_Msg, Name) -> {noreply, Name}.

terminate(Reason, Name) ->
    diff_player:event(["terminate ", Name, " ", diff_player:norm(Reason)]).
