// SPDX-License-Identifier: Apache-2.0
// Random supervision trees, random crashes and random start failures,
// checked step by step against a model of OTP's restart rules (points 1 to
// 4): which workers run, how often each was started, and whether the top
// supervisor gave up. A failed restart is retried, each retry counting, a
// one_for_all retry restarting the whole group again and a rest_for_one
// retry restarting from the failed child on (docs/otp_semantics.md 1 and 3).
#include "supervisor/supervisor.hpp"

#include "otp/logger.hpp"
#include "otp/otp.hpp"
#include "registry/registry.hpp"

#include <doctest/doctest.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

namespace {

// A worker that counts its starts.
struct counted_worker {
  std::map<std::string, int>* starts;
  counted_worker(std::map<std::string, int>* s, const std::string& id) : starts(s) { ++(*starts)[id]; }
};

// Starts worker `id`, unless a failure is planned for it: then fails, and
// uses up one planned failure.
otp::task<otp::result<otp::pid>> start_counted(std::string id, std::map<std::string, int>* starts,
                                               std::map<std::string, int>* failures) {
  if (auto it = failures->find(id); it != failures->end() && it->second > 0) {
    --it->second;
    co_return otp::error{otp::errc::invalid_argument, "planned start failure of " + id};
  }
  const otp::gen_server::start_options o{.name = id, .link = true};
  auto r = co_await otp::gen_server::start_opt<counted_worker>(o, starts, id);
  if (!r)
    co_return std::move(r).error();
  co_return r.value().pid();
}

// The model: a tree of workers and supervisors (supervisor children are permanent).
struct mnode {
  std::string id;
  bool is_sup = false;
  otp::restart_type restart = otp::restart_type::permanent;
  // supervisor part
  otp::strategy strat = otp::strategy::one_for_one;
  int intensity = 1;
  std::int64_t period = 5;
  std::vector<std::shared_ptr<mnode>> specs; // as started (the starter's copy)
  // run-time state
  bool running = false;
  std::vector<std::shared_ptr<mnode>> children; // current children (fresh copies of specs)
  std::deque<std::int64_t> window;
  mnode* parent = nullptr;
};

struct model {
  std::int64_t now = 3600; // the deterministic node's clock starts at 1 h
  std::map<std::string, int> starts;
  bool top_dead = false;

  static std::shared_ptr<mnode> fresh(const std::shared_ptr<mnode>& spec, mnode* parent) {
    auto c = std::make_shared<mnode>(*spec);
    c->parent = parent;
    c->children.clear();
    c->window.clear();
    c->running = false;
    return c;
  }
  std::map<std::string, int> failures; // planned start failures, as the real start functions have them

  // Starts `n` (a supervisor: its children in order); false if a start
  // failed, and then nothing of `n` runs.
  bool start(mnode& n) {
    if (!n.is_sup) {
      if (auto it = failures.find(n.id); it != failures.end() && it->second > 0) {
        --it->second;
        return false;
      }
      n.running = true;
      ++starts[n.id];
      return true;
    }
    n.window.clear();
    n.children.clear();
    for (const auto& s : n.specs) {
      n.children.push_back(fresh(s, &n));
      if (!start(*n.children.back())) {
        stop(n); // the ones started, in reverse; the supervisor's start fails
        n.children.clear();
        return false;
      }
    }
    n.running = true;
    return true;
  }
  void stop(mnode& n) {
    n.running = false;
    if (n.is_sup)
      for (auto& c : n.children)
        if (c->running)
          stop(*c);
  }
  bool add_restart(mnode& sup) {
    while (!sup.window.empty() && sup.window.front() < now - sup.period)
      sup.window.pop_front();
    sup.window.push_back(now);
    return sup.window.size() <= static_cast<std::size_t>(sup.intensity);
  }
  // Child `c` of supervisor `p` exited with `why` (not through its supervisor).
  void child_exited(mnode& p, mnode& c, const otp::exit_reason& why) {
    c.running = false;
    if (c.is_sup)
      stop(c);
    if (!otp::must_restart(c.restart, why)) {
      if (c.restart == otp::restart_type::temporary)
        std::erase_if(p.children, [&](const auto& k) { return k.get() == &c; });
      return;
    }
    restart(p, c);
  }
  // Supervisor `p` restarts `c` by its strategy; a failed start is retried
  // (at once here: nothing else reaches `p` in between), counting again.
  void restart(mnode& p, mnode& c) {
    if (!add_restart(p)) {
      stop(p);
      if (p.parent != nullptr)
        child_exited(*p.parent, p, otp::exit_reason::shutdown());
      else
        top_dead = true;
      return;
    }
    std::size_t at = 0;
    while (p.children[at].get() != &c)
      ++at;
    std::size_t first = at, last = at + 1;
    if (p.strat == otp::strategy::rest_for_one)
      last = p.children.size();
    if (p.strat == otp::strategy::one_for_all) {
      first = 0;
      last = p.children.size();
    }
    for (std::size_t i = last; i-- > first;)
      if (i != at && p.children[i]->running)
        stop(*p.children[i]);
    for (std::size_t i = last; i-- > first;)
      if (i != at && p.children[i]->restart == otp::restart_type::temporary) {
        p.children.erase(p.children.begin() + static_cast<std::ptrdiff_t>(i));
        --last;
      }
    for (std::size_t i = first; i < last; ++i) {
      if (!start(*p.children[i])) {
        // Only this child waits for the retry; the later ones stay stopped.
        restart(p, *p.children[i]);
        return;
      }
    }
  }
  void running_workers(const mnode& n, std::map<std::string, bool>& out) const {
    if (!n.is_sup) {
      out[n.id] = n.running;
      return;
    }
    for (const auto& c : n.children)
      running_workers(*c, out);
  }
  mnode* find(mnode& n, const std::string& id) {
    if (n.id == id)
      return &n;
    for (auto& c : n.children)
      if (auto* f = find(*c, id))
        return f;
    return nullptr;
  }
};

// Builds a random spec tree: `depth` levels of supervisors above workers.
std::shared_ptr<mnode> random_tree(std::mt19937& rng, int depth, int& counter, bool top) {
  auto n = std::make_shared<mnode>();
  n->is_sup = true;
  n->id = top ? "top" : "sup" + std::to_string(counter++);
  n->strat = static_cast<otp::strategy>(rng() % 3);
  n->intensity = static_cast<int>(rng() % 4);
  n->period = 1 + static_cast<std::int64_t>(rng() % 5);
  const int kids = 1 + static_cast<int>(rng() % 4);
  for (int i = 0; i < kids; ++i) {
    if (depth > 0 && rng() % 3 == 0) {
      n->specs.push_back(random_tree(rng, depth - 1, counter, false));
    } else {
      auto w = std::make_shared<mnode>();
      w->id = "w" + std::to_string(counter++);
      w->restart = static_cast<otp::restart_type>(rng() % 3);
      n->specs.push_back(w);
    }
  }
  return n;
}

std::vector<otp::child_spec> to_specs(const mnode& sup, std::map<std::string, int>* starts,
                                      std::map<std::string, int>* failures) {
  std::vector<otp::child_spec> out;
  for (const auto& s : sup.specs) {
    if (s->is_sup) {
      out.push_back({.id = s->id,
                     .start = otp::supervisor::starter({.strategy = s->strat, .intensity = s->intensity,
                                                        .period = std::chrono::seconds(s->period)},
                                                       to_specs(*s, starts, failures)),
                     .type = otp::child_type::supervisor});
    } else {
      out.push_back({.id = s->id,
                     .start = [id = s->id, starts, failures] { return start_counted(id, starts, failures); },
                     .restart = s->restart});
    }
  }
  return out;
}

otp::exit_reason random_reason(std::mt19937& rng) {
  switch (rng() % 4) {
    case 0: return otp::exit_reason::error("boom");
    case 1: return otp::exit_reason::kill();
    case 2: return otp::exit_reason::shutdown();
    default: return otp::exit_reason::shutdown("bye");
  }
}

} // namespace

TEST_SUITE_BEGIN("supervisor/random");

TEST_CASE("random trees under random crashes and start failures match the model of OTP's restart rules") {
  otp::set_log_level(otp::log_level::none);
  for (std::uint32_t seed = 1; seed <= 150; ++seed) {
    CAPTURE(seed);
    std::mt19937 rng(seed);
    int counter = 0;
    auto spec = random_tree(rng, 2, counter, true);
    model m;
    auto top = model::fresh(spec, nullptr);
    m.start(*top);

    std::map<std::string, int> starts;
    std::map<std::string, int> failures;
    std::vector<std::string> workers;
    for (const auto& [id, n] : m.starts)
      workers.push_back(id);
    std::optional<otp::exit_reason> top_exit;
    otp::node n({.deterministic = true, .seed = seed});
    const otp::supervisor_flags flags{.strategy = spec->strat, .intensity = spec->intensity,
                                      .period = std::chrono::seconds(spec->period)};
    const auto children = to_specs(*spec, &starts, &failures);
    n.spawn([&]() -> otp::task<void> {
      otp::trap_exit(true);
      auto r = co_await otp::supervisor::start_link(flags, children);
      REQUIRE(r);
      auto e = co_await otp::receive<otp::exit_msg>();
      top_exit = e.reason;
    });
    n.run_until_idle();
    REQUIRE(starts == m.starts);

    for (int step = 0; step < 25 && !m.top_dead; ++step) {
      CAPTURE(step);
      const int advance = static_cast<int>(rng() % 3);
      m.now += advance;
      n.advance(std::chrono::seconds(advance));
      n.run_until_idle();
      std::map<std::string, bool> running;
      m.running_workers(*top, running);
      std::vector<std::string> live;
      for (const auto& [id, up] : running)
        if (up)
          live.push_back(id);
      if (live.empty())
        break;
      if (rng() % 3 == 0) { // the next start or two of some worker fail
        const std::string& w = workers[rng() % workers.size()];
        const int fails = 1 + static_cast<int>(rng() % 2);
        failures[w] += fails;
        m.failures[w] += fails;
      }
      const std::string victim = live[rng() % live.size()];
      const otp::exit_reason why = random_reason(rng);
      const otp::exit_reason seen = why.is_kill() ? otp::exit_reason::killed() : why;
      mnode* w = m.find(*top, victim);
      REQUIRE(w != nullptr);
      m.child_exited(*w->parent, *w, seen);
      auto p = otp::registry::of(n).whereis(victim);
      REQUIRE(p);
      n.exit(*p, why);
      n.run_until_idle();

      CHECK(starts == m.starts);
      CHECK(failures == m.failures);
      CHECK(top_exit.has_value() == m.top_dead);
      std::map<std::string, bool> expected;
      m.running_workers(*top, expected);
      for (const auto& [id, up] : expected) {
        CAPTURE(id);
        CHECK(otp::registry::of(n).whereis(id).has_value() == (up && !m.top_dead));
      }
    }
    if (m.top_dead) {
      REQUIRE(top_exit);
      CHECK(*top_exit == otp::exit_reason::shutdown());
      CHECK(n.process_count() == 0);
    }
  }
  otp::set_log_level(otp::log_level::notice);
}

TEST_SUITE_END();
