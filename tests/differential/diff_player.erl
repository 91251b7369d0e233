%% Plays the differential test's scenarios on the real OTP supervisor and
%% writes one trace per scenario (format: docs/differential.md).
%% Run: erl +S 1 -noshell -pa DIR -run diff_player main SCENARIOS TRACE
-module(diff_player).
-export([main/1, event/1, norm/1, log/2]).

%% ------------------------------------------------------------------ entry

main(Args) ->
    try run(Args) of
        ok -> halt(0)
    catch C:R:St ->
        io:format(standard_error, "diff_player: ~p:~p~n~p~n", [C, R, St]),
        halt(1)
    end.

run([In, Out]) ->
    {ok, Bin} = file:read_file(In),
    Lines = [string:lexemes(L, " ") || L <- string:split(binary_to_list(Bin), "\n", all), L =/= ""],
    ets:new(diff_tab, [named_table, public, set]),
    register(diff_collector, spawn(fun() -> collect([], 0) end)),
    ok = logger:remove_handler(default),
    ok = logger:add_handler(diff, ?MODULE, #{level => all}),
    process_flag(trap_exit, true),
    {ok, F} = file:open(Out, [write]),
    play_all(Lines, F),
    ok = file:close(F).

play_all([], _F) -> ok;
play_all([["scenario", Seed] | Rest], F) ->
    {Body, [["end"] | After]} = lists:splitwith(fun(L) -> L =/= ["end"] end, Rest),
    io:format(F, "scenario ~s~n", [Seed]),
    try play(Body, F)
    catch C:R:St -> io:format(F, "crash ~0p ~0p ~0p~n", [C, R, St])
    end,
    cleanup(),
    io:format(F, "end~n", []),
    play_all(After, F).

%% A scenario that crashed the player must not leak into the next one.
cleanup() ->
    case whereis(s0) of
        undefined -> ok;
        P -> unlink(P), exit(P, kill), wait_dead([P])
    end,
    flush_exits(),
    _ = take_events(),
    ets:delete_all_objects(diff_tab).

flush_exits() ->
    receive {'EXIT', _, _} -> flush_exits() after 0 -> ok end.

%% ------------------------------------------------------------ the scenario

play(Body, F) ->
    Nodes = [L || [K | _] = L <- Body, K =/= "action"],
    Actions = [A || ["action" | A] <- Body],
    Kinds = maps:from_list([{Name, list_to_atom(K)} || [K, Name | _] <- Nodes]),
    put(kinds, Kinds),
    put(parents, maps:from_list([{Name, P} || [_, Name, P | _] <- Nodes])),
    [["sup", Top, "-" | _] = TopNode | _] = Nodes,
    Arg = sup_arg(TopNode, Nodes),
    R = case diff_sup:start_link(Top, Arg) of
            {ok, P} -> put(top, {alive, P}), "ok";
            Err -> put(top, {dead, "never started"}), flush_exits(), fmt_result(Err)
        end,
    step(F, 0, "start", R),
    lists:foldl(fun(A, I) ->
                        Res = act(A),
                        step(F, I, string:join(A, " "), Res),
                        I + 1
                end, 1, Actions).

step(F, I, What, Res) ->
    Tree = settle(),
    io:format(F, "step ~p ~s~n", [I, What]),
    [io:format(F, "E ~s~n", [E]) || E <- take_events()],
    io:format(F, "R ~s~nT ~s~n", [Res, Tree]).

%% Quiescence: sync with every live supervisor until the tree and the
%% number of events stop changing.
settle() -> settle(undefined).
settle(Prev) ->
    Cur = {snapshot(), count_events()},
    case Cur of
        Prev -> element(1, Cur);
        _ -> settle(Cur)
    end.

snapshot() ->
    case get(top) of
        {alive, P} ->
            case is_process_alive(P) of
                true -> "s0" ++ render(P, sup);
                false ->
                    receive {'EXIT', P, R} -> put(top, {dead, norm(R)}) after 5000 -> put(top, {dead, "no_exit"}) end,
                    snapshot()
            end;
        {dead, R} -> "dead:" ++ R
    end.

render(Pid, Kind) ->
    case catch supervisor:which_children(Pid) of
        L when is_list(L) -> render_list(L, Kind);
        _ when Kind =:= dyn -> "{!gone}";
        _ -> "(!gone)"
    end.

render_list(L, sup) -> "(" ++ string:join([child(C) || C <- L], " ") ++ ")";
render_list(L, dyn) -> "{" ++ string:join(lists:sort([pid_or(C) || {_, C, _, _} <- L]), " ") ++ "}".

child({Id, Pid, supervisor, _}) when is_pid(Pid) ->
    Name = atom_to_list(Id),
    Name ++ render(Pid, maps:get(Name, get(kinds), sup));
child({Id, C, _, _}) -> atom_to_list(Id) ++ "=" ++ pid_or(C).

shallow({Id, Pid, supervisor, _}) when is_pid(Pid) -> atom_to_list(Id) ++ "(...)";
shallow(C) -> child(C).

pid_or(P) when is_pid(P) -> pidname(P);
pid_or(A) -> atom_to_list(A).

pidname(P) ->
    case ets:lookup(diff_tab, {pid, P}) of
        [{_, N}] -> N;
        [] -> "?pid"
    end.

%% ----------------------------------------------------------------- specs

sup_arg(["sup", Name, _Parent, Strategy, Int, Per, Auto | _], Nodes) ->
    Flags = #{strategy => list_to_atom(Strategy), intensity => list_to_integer(Int),
              period => list_to_integer(Per), auto_shutdown => list_to_atom(Auto)},
    {Flags, [spec(N, Nodes) || [_, _, P | _] = N <- Nodes, P =:= Name]};
sup_arg(["dyn", Name, _Parent, Int, Per, Auto, _R, _S, _Sig, TR, TS, TSig, TPlan], _Nodes) ->
    Flags = #{strategy => simple_one_for_one, intensity => list_to_integer(Int),
              period => list_to_integer(Per), auto_shutdown => list_to_atom(Auto)},
    {Flags, [#{id => list_to_atom(Name ++ "_t"), start => {diff_worker, dyn_start_link, [plan(TPlan)]},
               restart => list_to_atom(TR), shutdown => shutdown(TS), significant => list_to_atom(TSig),
               type => worker}]}.

spec(["worker", Name, _Parent, R, S, Sig, Plan], _Nodes) ->
    worker_spec(Name, R, S, Sig, Plan);
spec(["sup", Name, _Parent, _St, _I, _P, _A, R, S, Sig] = N, Nodes) ->
    #{id => list_to_atom(Name), start => {diff_sup, start_link, [Name, sup_arg(N, Nodes)]},
      restart => list_to_atom(R), shutdown => shutdown(S), significant => list_to_atom(Sig),
      type => supervisor};
spec(["dyn", Name, _Parent, _I, _P, _A, R, S, Sig | _] = N, Nodes) ->
    #{id => list_to_atom(Name), start => {diff_sup, start_link, [Name, sup_arg(N, Nodes)]},
      restart => list_to_atom(R), shutdown => shutdown(S), significant => list_to_atom(Sig),
      type => supervisor}.

worker_spec(Name, R, S, Sig, Plan) ->
    #{id => list_to_atom(Name), start => {diff_worker, start_link, [Name, plan(Plan)]},
      restart => list_to_atom(R), shutdown => shutdown(S), significant => list_to_atom(Sig),
      type => worker}.

shutdown("brutal_kill") -> brutal_kill;
shutdown("infinity") -> infinity;
shutdown(Ms) -> list_to_integer(Ms).

plan("-") -> [];
plan(P) -> [list_to_atom(X) || X <- string:lexemes(P, ",")].

%% --------------------------------------------------------------- actions

act(["crash", Name, Why]) ->
    case current(Name) of
        none -> "skip";
        Pid ->
            Ref = monitor(process, Pid),
            crash(Pid, Why),
            receive {'DOWN', Ref, process, Pid, _} -> "ok" after 5000 -> "hang" end
    end;
act(["exitsup", Name, "kill"]) ->
    with_sup(Name, fun(Pid) ->
        %% Its workers outlive it briefly (they trap exits): wait for all.
        Kids = [C || {_, C, _, _} <- supervisor:which_children(Pid), is_pid(C)],
        exit(Pid, kill),
        wait_dead([Pid | Kids])
    end);
act(["exitsup", Name, Why]) ->
    with_sup(Name, fun(Pid) -> exit(Pid, reason(Why)), "ok" end);
act(["terminate_child", Sup, Id]) ->
    with_sup(Sup, fun(Pid) -> fmt_result(supervisor:terminate_child(Pid, list_to_atom(Id))) end);
act(["restart_child", Sup, Id]) ->
    with_sup(Sup, fun(Pid) -> fmt_result(supervisor:restart_child(Pid, list_to_atom(Id))) end);
act(["delete_child", Sup, Id]) ->
    with_sup(Sup, fun(Pid) -> fmt_result(supervisor:delete_child(Pid, list_to_atom(Id))) end);
act(["start_child", Sup, Name, R, S, Sig, Plan]) ->
    put(kinds, maps:merge(#{Name => worker}, get(kinds))),
    put(parents, maps:merge(#{Name => Sup}, get(parents))),
    with_sup(Sup, fun(Pid) -> fmt_result(supervisor:start_child(Pid, worker_spec(Name, R, S, Sig, Plan))) end);
act(["dstart", Dyn, Inst]) ->
    with_sup(Dyn, fun(Pid) -> fmt_result(supervisor:start_child(Pid, [Inst])) end);
act(["dterminate", Dyn, Inst]) ->
    with_sup(Dyn, fun(Pid) ->
        case ets:lookup(diff_tab, {cur, Inst}) of
            [] -> "skip";
            [{_, C}] -> fmt_result(supervisor:terminate_child(Pid, C))
        end
    end);
act(["which", Sup]) ->
    with_sup(Sup, fun(Pid) -> render(Pid, maps:get(Sup, get(kinds))) end);
act(["count", Sup]) ->
    with_sup(Sup, fun(Pid) -> fmt_counts(supervisor:count_children(Pid)) end);
%% A call that reaches W's supervisor after W's 'EXIT' and before anything
%% the supervisor does next (a restart retry): the supervisor is suspended
%% while W is killed and the request is queued.
act(["racecall", W, Op | Id]) ->
    Sup = maps:get(W, get(parents)),
    case {current(W), whereis(list_to_atom(Sup))} of
        {none, _} -> "skip";
        {_, undefined} -> "skip";
        {Pid, SupPid} ->
            sys:suspend(SupPid),
            Ref = monitor(process, Pid),
            exit(Pid, kill),
            receive {'DOWN', Ref, process, Pid, _} -> ok end,
            Req = gen_server:send_request(SupPid, race_req(Op, Id)),
            sys:resume(SupPid),
            case gen_server:wait_response(Req, infinity) of
                {reply, R} when Op =:= "which" -> "(" ++ string:join([shallow(C) || C <- R], " ") ++ ")";
                {reply, R} when Op =:= "count" -> fmt_counts(R);
                {reply, R} -> fmt_result(R);
                {error, {Why, _}} -> "exit:" ++ norm(Why)
            end
    end;
act(["stop"]) ->
    case get(top) of
        {alive, P} ->
            exit(P, shutdown),
            receive {'EXIT', P, R} -> put(top, {dead, norm(R)}), "ok" after 5000 -> "hang" end;
        _ -> "skip"
    end.

crash(Pid, "kill") -> exit(Pid, kill);
crash(Pid, "exception") -> gen_server:cast(Pid, raise);
crash(Pid, Why) -> gen_server:cast(Pid, {stop, reason(Why)}).

race_req("which", []) -> which_children;
race_req("count", []) -> count_children;
race_req(Op, [Id]) -> {list_to_atom(Op), list_to_atom(Id)}.

fmt_counts(C) ->
    lists:flatten(io_lib:format("specs=~p active=~p supervisors=~p workers=~p",
                                [proplists:get_value(K, C) || K <- [specs, active, supervisors, workers]])).

with_sup(Name, Fun) ->
    case whereis(list_to_atom(Name)) of
        undefined -> "skip";
        Pid -> try Fun(Pid) catch exit:R -> "exit:" ++ norm(R) end
    end.

current(Name) ->
    case ets:lookup(diff_tab, {cur, Name}) of
        [{_, P}] -> case is_process_alive(P) of true -> P; false -> none end;
        [] -> none
    end.

wait_dead(Pids) ->
    Refs = [monitor(process, P) || P <- Pids],
    lists:foreach(fun(R) -> receive {'DOWN', R, process, _, _} -> ok after 5000 -> ok end end, Refs),
    "ok".

reason("normal") -> normal;
reason("shutdown") -> shutdown;
reason("shutdown_tag") -> {shutdown, tag};
reason("error") -> boom.

%% -------------------------------------------------------- normalization

fmt_result(ok) -> "ok";
fmt_result({ok, undefined}) -> "ok:undefined";
fmt_result({ok, P}) when is_pid(P) -> "ok:" ++ pidname(P);
fmt_result({ok, P, _}) when is_pid(P) -> "ok:" ++ pidname(P);
fmt_result({error, {already_started, _}}) -> "error:already_started";
fmt_result({error, {bad_combination, _}}) -> "error:bad_combination";
fmt_result({error, {start_spec, {bad_combination, _}}}) -> "error:bad_combination";
%% start_child's failure carries the child record; the C++ error does not.
fmt_result({error, {R, C}}) when element(1, C) =:= child -> "error:" ++ norm(R);
fmt_result({error, {Tag, _}}) when Tag =:= invalid_child_spec; Tag =:= start_spec; Tag =:= bad_start_spec ->
    "error:invalid_child_spec";
fmt_result({error, A}) when is_atom(A) -> "error:" ++ atom_to_list(A);
fmt_result({error, R}) -> "error:" ++ norm(R);
fmt_result(Other) -> "?" ++ flat(Other).

norm(normal) -> "normal";
norm(shutdown) -> "shutdown";
norm({shutdown, {failed_to_start_child, Id, _}}) -> "shutdown:failed_to_start_child:" ++ flat(Id);
norm({shutdown, T}) -> "shutdown:" ++ flat(T);
norm({bad_combination, _}) -> "bad_combination";
norm({start_spec, {bad_combination, _}}) -> "bad_combination";
norm({start_spec, _}) -> "invalid_child_spec";
norm({_, [{_, _, _, _} | _]}) -> "exception";
norm(A) when is_atom(A) -> atom_to_list(A);
norm(T) -> flat(T).

flat(T) -> [C || C <- lists:flatten(io_lib:format("~0p", [T])), C =/= $\s].

%% ------------------------------------------------- events and the reports

event(IoList) -> diff_collector ! {ev, lists:flatten(IoList)}, ok.

collect(Acc, N) ->
    receive
        {ev, E} ->
            collect([E | Acc], N + 1);
        {take, From} -> From ! {events, lists:reverse(Acc)}, collect([], N);
        {count, From} -> From ! {count, N}, collect(Acc, N)
    end.

take_events() -> diff_collector ! {take, self()}, receive {events, E} -> E end.
count_events() -> diff_collector ! {count, self()}, receive {count, N} -> N end.

%% The logger handler: supervisor reports become events, the rest is dropped.
log(#{msg := {report, #{label := {supervisor, Ctx}, report := R}}}, _Config) when Ctx =/= progress ->
    Sup = case proplists:get_value(supervisor, R) of
              {local, A} -> atom_to_list(A);
              {P, _} when is_pid(P) -> pidname(P);
              P when is_pid(P) -> pidname(P);
              X -> flat(X)
          end,
    Off = proplists:get_value(offender, R, []),
    Id = flat(proplists:get_value(id, Off)),
    Why = proplists:get_value(reason, R),
    event(["report ", atom_to_list(Ctx), " ", Sup, " ", Id, " ", norm(Why)]);
log(_, _) -> ok.
