// SPDX-License-Identifier: Apache-2.0
// The differential test's C++ player: plays the scenarios that scenario.py
// generates on this library's supervisors, on a deterministic node, and
// writes the same trace as diff_player.erl does on OTP (format and
// normalization: docs/differential.md).
//
// Usage: diff_player SCENARIOS TRACE
#include "behaviours/gen_server.hpp"
#include "otp/logger.hpp"
#include "otp/otp.hpp"
#include "registry/registry.hpp"
#include "supervisor/dynamic_supervisor.hpp"
#include "supervisor/supervisor.hpp"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <variant>
#include <vector>

namespace {

using words = std::vector<std::string>;

words split(const std::string& line, char sep = ' ') {
  words out;
  std::string cur;
  std::istringstream in(line);
  while (std::getline(in, cur, sep))
    if (!cur.empty())
      out.push_back(cur);
  return out;
}

std::string join(const words& w, const char* sep) {
  std::string out;
  for (std::size_t i = 0; i < w.size(); ++i)
    out += (i ? sep : "") + w[i];
  return out;
}

struct scenario {
  std::string seed;
  std::vector<words> nodes;   // "sup ...", "worker ...", "dyn ...", depth first
  std::vector<words> actions; // without the word "action"
};

// Everything one scenario's run records. The node is deterministic and runs
// on this thread only, so plain members are enough.
struct world {
  std::vector<std::string> events;
  std::map<std::string, int> counts;                // inits per worker name
  std::unordered_map<otp::pid, std::string> names;   // pid -> worker or supervisor name
  std::map<std::string, otp::pid> current;           // worker name -> its last started pid
  std::map<std::string, std::string> kinds;          // name -> worker | sup | dyn
  std::map<std::string, std::string> parents;        // name -> its supervisor's name
  std::optional<otp::pid> top;
  std::string top_dead = "never started";
  std::string result;                                // of the last command
  const scenario* scen = nullptr;

  std::string name_of(const otp::pid& p) const {
    auto it = names.find(p);
    return it == names.end() ? "?pid" : it->second;
  }
};

// ------------------------------------------------------------ normalization

// An exit reason's printed form (exit_reason::to_string) in the shared vocabulary.
std::string norm_text(const std::string& s) {
  const std::string sd = "{shutdown,";
  if (s.rfind(sd, 0) == 0) {
    std::string detail = s.substr(sd.size(), s.size() - sd.size() - 1);
    // "{failed_to_start_child,ID,Why}" as OTP, or "failed_to_start_child ID: why"
    for (const std::string f : {"{failed_to_start_child,", "failed_to_start_child "})
      if (detail.rfind(f, 0) == 0) {
        const std::string rest = detail.substr(f.size());
        return "shutdown:failed_to_start_child:" + rest.substr(0, rest.find_first_of(":,"));
      }
    return "shutdown:" + detail;
  }
  if (s.rfind("{exception,", 0) == 0)
    return "exception";
  if (s.rfind("invalid child spec", 0) == 0)
    return s.find("auto_shutdown is never") != std::string::npos ? "bad_combination" : "invalid_child_spec";
  return s;
}

std::string norm(const otp::exit_reason& r) { return norm_text(r.to_string()); }

std::string norm_error(const otp::error& e) {
  if (e == otp::errc::exited)
    return "error:" + norm(e.reason);
  if (e == otp::errc::invalid_child_spec && e.message().find("auto_shutdown is never") != std::string::npos)
    return "error:bad_combination"; // OTP: {error, {bad_combination, ...}}
  if (e == otp::errc::already_started)
    return e.message().find("already present") != std::string::npos ? "error:already_present" : "error:already_started";
  static const std::pair<otp::errc, const char*> names[] = {
    {otp::errc::not_found, "not_found"}, {otp::errc::running, "running"},   {otp::errc::ignored, "ignored"},
    {otp::errc::invalid_child_spec, "invalid_child_spec"},                 {otp::errc::noproc, "noproc"},
    {otp::errc::invalid_argument, "invalid_argument"},                     {otp::errc::timeout, "timeout"},
  };
  if (e == otp::sup_errc::restarting)
    return "error:restarting";
  if (e == otp::sup_errc::simple_one_for_one)
    return "error:simple_one_for_one";
  for (const auto& [code, name] : names)
    if (e == code)
      return std::string("error:") + name;
  return "error:?" + e.message();
}

std::string fmt(const world& w, const otp::result<otp::pid>& r) {
  return r ? "ok:" + w.name_of(r.value()) : norm_error(r.error());
}

std::string fmt(const otp::result<void>& r) { return r ? "ok" : norm_error(r.error()); }

// A supervisor's name as the report has it: s3, 's3' or {local,s3}.
std::string bare_name(std::string s) {
  if (s.rfind("{local,", 0) == 0)
    s = s.substr(7, s.size() - 8);
  if (s.size() >= 2 && s.front() == '\'' && s.back() == '\'')
    s = s.substr(1, s.size() - 2);
  return s;
}

// A supervisor report as an event, as OTP's: errorContext, supervisor,
// offender id, reason. The fields first; the text of reports without
// fields (older supervisors) as a fallback.
void on_report(world* w, const otp::log_event& e) {
  if (e.domain != "supervisor")
    return;
  std::string ctx(e.kind), sup, id, why;
  if (const auto* f = e.field("errorContext"))
    ctx = *f;
  if (const auto* f = e.field("supervisor"))
    sup = *f;
  if (const auto* f = e.field("offender.id"))
    id = *f;
  if (const auto* f = e.field("reason"))
    why = *f;
  // "supervisor NAME: child 'ID' <pid> (restart): REASON"
  const std::string& t = e.text;
  const auto colon = t.find(": child '");
  if (sup.empty() && t.rfind("supervisor ", 0) == 0 && colon != std::string::npos)
    sup = t.substr(11, colon - 11);
  if (id.empty() && colon != std::string::npos) {
    const auto from = colon + 9;
    id = t.substr(from, t.find('\'', from) - from);
  }
  if (why.empty()) {
    const auto at = t.find("): ");
    why = at == std::string::npos ? "?" : t.substr(at + 3);
  }
  if (!e.field("errorContext") && ctx == "reached_max_restart_intensity") {
    ctx = "shutdown"; // OTP's errorContext for it; the reason names it
    why = "reached_max_restart_intensity";
  }
  w->events.push_back("report " + ctx + " " + bare_name(sup) + " " + (id.empty() ? "undefined" : bare_name(id)) + " "
                      + norm_text(why));
}

// ------------------------------------------------------------------ worker

struct stop_req {
  otp::exit_reason why;
};
struct raise_req {};

std::vector<std::string> plan_of(const std::string& p) { return p == "-" ? words{} : split(p, ','); }

// The worker: traps exits so that terminate runs on shutdown; its init
// follows the scenario's plan (ok, ignore, fail) start by start.
struct dworker {
  world* w;
  std::string plan;
  std::string name;
  dworker(world* w_, std::string plan_, std::string name_) : w(w_), plan(std::move(plan_)), name(std::move(name_)) {}

  otp::init_result init(otp::context& ctx) {
    otp::trap_exit(true);
    const auto steps = plan_of(plan);
    const int n = ++w->counts[name];
    const std::string outcome = n <= static_cast<int>(steps.size()) ? steps[static_cast<std::size_t>(n - 1)] : "ok";
    w->events.push_back("init " + name + " " + outcome);
    if (outcome == "ignore")
      return otp::init_result::ignore();
    if (outcome == "fail")
      return otp::init_result::stop(otp::exit_reason::error("init_fail"));
    w->names[ctx.self()] = name;
    w->current[name] = ctx.self();
    return otp::init_result::ok();
  }
  void handle_cast(otp::context& ctx, stop_req r) { ctx.stop(r.why); }
  void handle_cast(otp::context&, raise_req) { throw std::runtime_error("oops"); }
  void handle_info(otp::context&, otp::exit_msg) {}
  void terminate(otp::context&, const otp::exit_reason& why) {
    w->events.push_back("terminate " + name + " " + norm(why));
  }
};

// ------------------------------------------------------------------- specs

otp::restart_type restart_of(const std::string& s) {
  if (s == "permanent")
    return otp::restart_type::permanent;
  if (s == "transient")
    return otp::restart_type::transient;
  if (s == "temporary")
    return otp::restart_type::temporary;
  throw std::invalid_argument("unknown restart type " + s);
}

otp::shutdown_policy shutdown_of(const std::string& s) {
  if (s == "brutal_kill")
    return otp::shutdown_policy::brutal_kill();
  if (s == "infinity")
    return otp::infinity;
  return std::chrono::milliseconds(std::stoi(s));
}

otp::strategy strategy_of(const std::string& s) {
  if (s == "one_for_one")
    return otp::strategy::one_for_one;
  if (s == "one_for_all")
    return otp::strategy::one_for_all;
  if (s == "rest_for_one")
    return otp::strategy::rest_for_one;
  throw std::invalid_argument("unknown strategy " + s);
}

otp::auto_shutdown auto_of(const std::string& s) {
  if (s == "never")
    return otp::auto_shutdown::never;
  if (s == "any_significant")
    return otp::auto_shutdown::any_significant;
  if (s == "all_significant")
    return otp::auto_shutdown::all_significant;
  throw std::invalid_argument("unknown auto_shutdown " + s);
}

// Records a started supervisor's pid under its name.
otp::task<otp::result<otp::pid>> start_recorded(world* w, std::string name, otp::start_fn inner) {
  auto starting = inner();
  auto r = co_await starting;
  if (r)
    w->names[r.value()] = name;
  co_return r;
}

otp::start_fn recorded(world* w, std::string name, otp::start_fn inner) {
  return [w, name = std::move(name), inner = std::move(inner)]() { return start_recorded(w, name, inner); };
}

otp::supervisor_flags flags_of(const words& n) {
  return {.strategy = strategy_of(n[3]), .intensity = std::stoi(n[4]), .period = std::chrono::seconds(std::stoi(n[5])),
          .auto_shutdown = auto_of(n[6])};
}

otp::child_spec worker_spec(world* w, const std::string& name, const std::string& restart, const std::string& shutdown,
                            const std::string& significant, const std::string& plan) {
  return {.id = name, .start = otp::worker<dworker>(w, plan, name), .restart = restart_of(restart),
          .shutdown = shutdown_of(shutdown), .type = otp::child_type::worker, .significant = significant == "true"};
}

std::vector<otp::child_spec> children_of(world* w, const std::string& parent);

otp::child_spec spec_of(world* w, const words& n) {
  if (n[0] == "worker")
    return worker_spec(w, n[1], n[3], n[4], n[5], n[6]);
  if (n[0] == "sup")
    return {.id = n[1],
            .start = recorded(w, n[1], otp::supervisor::starter(flags_of(n), children_of(w, n[1]), n[1])),
            .restart = restart_of(n[7]), .shutdown = shutdown_of(n[8]), .type = otp::child_type::supervisor,
            .significant = n[9] == "true"};
  // dyn NAME PARENT INTENSITY PERIOD AUTO RESTART SHUTDOWN SIGNIFICANT T_RESTART T_SHUTDOWN T_SIGNIFICANT T_PLAN
  otp::dynamic_supervisor_flags df{.intensity = std::stoi(n[3]), .period = std::chrono::seconds(std::stoi(n[4])),
                                   .auto_shutdown = auto_of(n[5])};
  otp::dynamic_child_spec<std::string> t{.id = n[1] + "_t", .start = otp::dynamic_worker<dworker, std::string>(w, n[12]),
                                         .restart = restart_of(n[9]), .shutdown = shutdown_of(n[10]),
                                         .significant = n[11] == "true"};
  return {.id = n[1], .start = recorded(w, n[1], otp::dynamic_supervisor::starter(df, t, n[1])),
          .restart = restart_of(n[6]), .shutdown = shutdown_of(n[7]), .type = otp::child_type::supervisor,
          .significant = n[8] == "true"};
}

std::vector<otp::child_spec> children_of(world* w, const std::string& parent) {
  std::vector<otp::child_spec> out;
  for (const auto& n : w->scen->nodes)
    if (n[2] == parent)
      out.push_back(spec_of(w, n));
  return out;
}

// ------------------------------------------------------------------ driver

using dyn_ref = otp::dynamic_supervisor_ref<std::string>;

otp::task<std::string> render(world* w, otp::pid sup, std::string kind) {
  if (kind == "dyn") {
    const dyn_ref ref(sup); // the call takes it by reference: it must outlive the co_await
    auto listing = otp::dynamic_supervisor::which_children(ref);
    auto r = co_await listing;
    if (!r)
      co_return "{!gone}";
    words out;
    for (const auto& c : r.value())
      out.push_back(c.pid ? w->name_of(*c.pid) : c.restarting ? "restarting" : "undefined");
    std::sort(out.begin(), out.end());
    co_return "{" + join(out, " ") + "}";
  }
  auto listing = otp::supervisor::which_children(sup);
  auto r = co_await listing;
  if (!r)
    co_return "(!gone)";
  words out;
  for (const auto& c : r.value()) {
    if (c.type == otp::child_type::supervisor && c.pid) {
      const auto k = w->kinds.find(c.id);
      auto inner = render(w, *c.pid, k == w->kinds.end() ? "sup" : k->second);
      out.push_back(c.id + co_await inner);
    } else {
      out.push_back(c.id + "=" + (c.pid ? w->name_of(*c.pid) : c.restarting ? "restarting" : "undefined"));
    }
  }
  co_return "(" + join(out, " ") + ")";
}

otp::task<bool> alive(otp::pid p) {
  auto asking = otp::get_process_info(p);
  auto info = co_await asking;
  co_return info.has_value();
}

otp::exit_reason reason_of(const std::string& s) {
  if (s == "normal")
    return otp::exit_reason::normal();
  if (s == "shutdown")
    return otp::exit_reason::shutdown();
  if (s == "shutdown_tag")
    return otp::exit_reason::shutdown("tag");
  if (s == "kill")
    return otp::exit_reason::kill();
  return otp::exit_reason::error("boom");
}

std::string fmt_counts(const otp::child_counts& c) {
  return "specs=" + std::to_string(c.specs) + " active=" + std::to_string(c.active)
         + " supervisors=" + std::to_string(c.supervisors) + " workers=" + std::to_string(c.workers);
}

// A failed call: the supervisor's exit (OTP: the caller exits), or its answer.
otp::task<std::string> fmt_race(otp::error e, otp::pid sup) {
  auto checking = alive(sup);
  if ((e == otp::errc::exited || e == otp::errc::noproc) && !co_await checking)
    co_return "exit:" + norm(e.reason);
  co_return norm_error(e);
}

// A call that reaches W's supervisor after W's 'EXIT' and before anything
// the supervisor does next (a restart retry). On the deterministic node
// (FIFO), the kill is queued to W, this process yields, W dies and makes
// its supervisor ready behind this process, whose request is then queued
// behind the 'EXIT'. OTP's player gets the same order with sys:suspend.
otp::task<std::string> race_call(world* w, words a) {
  auto it = w->current.find(a[1]);
  const std::optional<otp::pid> sup = otp::whereis(w->parents.at(a[1]));
  if (it == w->current.end() || !sup)
    co_return "skip";
  auto checking = alive(it->second);
  if (!co_await checking)
    co_return "skip";
  otp::exit(it->second, otp::exit_reason::kill());
  co_await otp::yield();
  const std::string& op = a[2];
  if (op == "which") {
    auto calling = otp::supervisor::which_children(*sup);
    auto r = co_await calling;
    if (!r) {
      auto failing = fmt_race(r.error(), *sup);
      co_return co_await failing;
    }
    words out;
    for (const auto& c : r.value())
      out.push_back(c.type == otp::child_type::supervisor && c.pid
                      ? c.id + "(...)"
                      : c.id + "=" + (c.pid ? w->name_of(*c.pid) : c.restarting ? "restarting" : "undefined"));
    co_return "(" + join(out, " ") + ")";
  }
  if (op == "count") {
    auto calling = otp::supervisor::count_children(*sup);
    auto r = co_await calling;
    if (r)
      co_return fmt_counts(r.value());
    auto failing = fmt_race(r.error(), *sup);
    co_return co_await failing;
  }
  if (op == "restart_child") {
    auto calling = otp::supervisor::restart_child(*sup, a[3]);
    auto r = co_await calling;
    if (r)
      co_return fmt(*w, r);
    auto failing = fmt_race(r.error(), *sup);
    co_return co_await failing;
  }
  otp::result<void> r = otp::outcome::success();
  if (op == "delete_child") {
    auto calling = otp::supervisor::delete_child(*sup, a[3]);
    r = co_await calling;
  } else {
    auto calling = otp::supervisor::terminate_child(*sup, a[3]);
    r = co_await calling;
  }
  if (r)
    co_return fmt(r);
  auto failing = fmt_race(r.error(), *sup);
  co_return co_await failing;
}

otp::task<std::string> act(world* w, words a) {
  const std::string& what = a[0];
  if (what == "stop") {
    if (!w->top)
      co_return "skip";
    otp::exit(*w->top, otp::exit_reason::shutdown());
    co_return "ok";
  }
  if (what == "crash") {
    auto it = w->current.find(a[1]);
    if (it == w->current.end())
      co_return "skip";
    const otp::pid p = it->second;
    auto checking = alive(p);
    if (!co_await checking)
      co_return "skip";
    if (a[2] == "kill")
      otp::exit(p, otp::exit_reason::kill());
    else if (a[2] == "exception")
      otp::gen_server::cast<dworker>(p, raise_req{});
    else
      otp::gen_server::cast<dworker>(p, stop_req{reason_of(a[2])});
    co_return "ok";
  }
  if (what == "racecall") {
    auto racing = race_call(w, a);
    co_return co_await racing;
  }
  if (what == "start_child") { // known even if the supervisor is gone, as in diff_player.erl
    w->kinds.emplace(a[2], "worker");
    w->parents.emplace(a[2], a[1]);
  }
  const std::optional<otp::pid> sup = otp::whereis(a[1]);
  if (!sup)
    co_return "skip";
  if (what == "exitsup") {
    otp::exit(*sup, reason_of(a[2]));
    co_return "ok";
  }
  if (what == "terminate_child") {
    auto calling = otp::supervisor::terminate_child(*sup, a[2]);
    co_return fmt(co_await calling);
  }
  if (what == "restart_child") {
    auto calling = otp::supervisor::restart_child(*sup, a[2]);
    auto r = co_await calling;
    co_return fmt(*w, r);
  }
  if (what == "delete_child") {
    auto calling = otp::supervisor::delete_child(*sup, a[2]);
    co_return fmt(co_await calling);
  }
  if (what == "start_child") {
    auto calling = otp::supervisor::start_child(*sup, worker_spec(w, a[2], a[3], a[4], a[5], a[6]));
    auto r = co_await calling;
    co_return fmt(*w, r);
  }
  if (what == "dstart") {
    auto calling = otp::dynamic_supervisor::start_child(dyn_ref(*sup), a[2]);
    auto r = co_await calling;
    co_return fmt(*w, r);
  }
  if (what == "dterminate") {
    auto it = w->current.find(a[2]);
    if (it == w->current.end())
      co_return "skip";
    const dyn_ref ref(*sup); // taken by reference: must outlive the co_await
    auto calling = otp::dynamic_supervisor::terminate_child(ref, it->second);
    co_return fmt(co_await calling);
  }
  if (what == "which") {
    auto rendering = render(w, *sup, w->kinds.at(a[1]));
    co_return co_await rendering;
  }
  if (what == "count") {
    otp::result<otp::child_counts> r = otp::error{otp::errc::invalid_argument};
    if (w->kinds.at(a[1]) == "dyn") {
      const dyn_ref ref(*sup); // taken by reference: must outlive the co_await
      auto calling = otp::dynamic_supervisor::count_children(ref);
      r = co_await calling;
    } else {
      auto calling = otp::supervisor::count_children(*sup);
      r = co_await calling;
    }
    if (!r)
      co_return norm_error(r.error());
    co_return fmt_counts(r.value());
  }
  throw std::invalid_argument("unknown action " + what);
}

// What main asks the driver to do: start the top, play an action, or take a snapshot.
struct command {
  int index; // -1 start, -2 snapshot, -3 quit, else the action
};

otp::task<std::string> snapshot(world* w) {
  if (!w->top)
    co_return "dead:" + w->top_dead;
  auto rendering = render(w, *w->top, "sup");
  co_return "s0" + co_await rendering;
}

otp::task<std::string> start_top(world* w) {
  const words& top = w->scen->nodes.front();
  auto starting = otp::supervisor::start_link(flags_of(top), children_of(w, "s0"), std::string("s0"));
  auto r = co_await starting;
  if (r) {
    w->top = r.value();
    w->names[r.value()] = "s0";
  }
  co_return r ? std::string("ok") : norm_error(r.error());
}

// The top supervisor's parent: plays what main sends, and hears the top's exit.
otp::task<void> driver(world* w) {
  otp::trap_exit(true);
  for (;;) {
    auto next = otp::receive(
      [](command c) -> std::optional<command> { return c; },
      [w](otp::exit_msg e) -> std::optional<command> {
        if (w->top && e.from == *w->top) {
          w->top_dead = norm(e.reason);
          w->top.reset();
        }
        return std::nullopt;
      });
    const std::optional<command> c = co_await next;
    if (!c)
      continue;
    if (c->index == -3)
      co_return;
    if (c->index == -1) {
      auto starting = start_top(w);
      w->result = co_await starting;
    } else if (c->index == -2) {
      auto taking = snapshot(w);
      w->result = co_await taking;
    } else {
      auto acting = act(w, w->scen->actions[static_cast<std::size_t>(c->index)]);
      w->result = co_await acting;
    }
  }
}

void play(const scenario& s, std::ostream& out) {
  world w;
  w.scen = &s;
  for (const auto& n : s.nodes) {
    w.kinds[n[1]] = n[0];
    w.parents[n[1]] = n[2];
  }
  otp::set_log_handler([&w](const otp::log_event& e) { on_report(&w, e); });
  {
    otp::node n({.deterministic = true});
    const otp::pid d = n.spawn(driver, &w);
    auto run = [&](int index) {
      otp::send(d, command{index});
      n.run_until_idle();
      return w.result;
    };
    auto step = [&](int i, const std::string& what, int index) {
      const std::string r = run(index);
      const std::string tree = run(-2);
      out << "step " << i << " " << what << "\n";
      for (const auto& e : w.events)
        out << "E " << e << "\n";
      w.events.clear();
      out << "R " << r << "\nT " << tree << std::endl; // flushed: a crash keeps what came before
    };
    step(0, "start", -1);
    for (std::size_t i = 0; i < s.actions.size(); ++i)
      step(static_cast<int>(i) + 1, join(s.actions[i], " "), static_cast<int>(i));
    run(-3);
  }
  otp::set_log_handler({});
}

} // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: " << argv[0] << " SCENARIOS TRACE\n";
    return 2;
  }
  std::ifstream in(argv[1]);
  if (!in) {
    std::cerr << argv[0] << ": cannot read " << argv[1] << "\n";
    return 2;
  }
  std::ofstream out(argv[2]);
  otp::set_log_level(otp::log_level::error);
  std::string line;
  scenario cur;
  while (std::getline(in, line)) {
    words w = split(line);
    if (w.empty())
      continue;
    if (w[0] == "scenario") {
      cur = scenario{w.at(1), {}, {}};
    } else if (w[0] == "action") {
      cur.actions.emplace_back(w.begin() + 1, w.end());
    } else if (w[0] == "end") {
      out << "scenario " << cur.seed << std::endl;
      try {
        play(cur, out);
      } catch (const std::exception& e) {
        out << "crash " << e.what() << "\n";
      }
      out << "end\n";
    } else {
      cur.nodes.push_back(std::move(w));
    }
  }
  return out ? 0 : 1;
}
