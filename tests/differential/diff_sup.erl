%% The supervisor callback module: flags and specs come from the scenario.
-module(diff_sup).
-behaviour(supervisor).
-export([start_link/2, init/1]).

start_link(Name, Arg) -> supervisor:start_link({local, list_to_atom(Name)}, ?MODULE, {Name, Arg}).

init({Name, {Flags, Specs}}) ->
    ets:insert(diff_tab, {{pid, self()}, Name}),
    {ok, {Flags, Specs}}.
