// SPDX-License-Identifier: Apache-2.0
// samples/swarm - 4,000 processes in four teams. Each team is a leader
// linked to 999 workers; a coordinator monitors all 4,000. Each team meets
// a different fault, and the coordinator's DOWN messages show how it
// travelled: through links (killing the team), into a leader that traps
// exits (as messages), or nowhere (a normal exit is not an error).
#include "otp/otp.hpp"

#include <chrono>
#include <cstdio>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

constexpr int team_size = 1000; // a leader and 999 workers
constexpr int teams = 4;

struct go {};
struct crash {};
struct team_up {
  int index;
  std::vector<otp::pid> members; // leader first
};
struct trapped_report {
  int exit_messages;
};

// A worker waits for an order: finish normally, or crash.
otp::task<void> worker() {
  co_await otp::receive([](go) {}, [](crash) { throw std::runtime_error("worker hit a bad record"); });
}

otp::task<void> leader(int index, otp::pid coordinator) {
  if (index == 1)
    otp::trap_exit(true); // worker exits reach this leader as messages
  team_up up{index, {otp::self()}};
  for (int i = 1; i < team_size; ++i)
    up.members.push_back(otp::spawn_link(worker));
  std::vector<otp::pid> workers(up.members.begin() + 1, up.members.end());
  otp::send(coordinator, std::move(up));
  co_await otp::receive<go>();

  switch (index) {
    case 0: // one worker crashes; the crash travels through every link
      otp::send(workers[17], crash{});
      co_await otp::receive<go>(); // never comes: the link kills us first
      break;
    case 1: { // kill 10 workers; trapping, we get 10 exit messages and live on
      for (int i = 0; i < 10; ++i)
        otp::exit(workers[static_cast<std::size_t>(i)], otp::exit_reason::kill());
      int got = 0;
      while (got < 10) {
        auto m = co_await otp::receive<otp::exit_msg>();
        got += m.reason == otp::exit_reason::killed() ? 1 : 0;
      }
      otp::send(coordinator, trapped_report{got});
      co_await otp::receive<go>(); // the coordinator kills us instead
      break;
    }
    case 2: // everyone finishes normally; links ignore `normal`
      for (auto& w : workers)
        otp::send(w, go{});
      co_await otp::receive<go>();
      break;
    default: // a clean shutdown of every worker; `shutdown` is not `normal`,
             // so it comes back through the links and stops us too
      for (auto& w : workers)
        otp::exit(w, otp::exit_reason::shutdown());
      co_await otp::receive<go>();
  }
}

struct ref_in_team {
  const std::map<otp::pid, int>* team_of;
};

otp::task<void> coordinator() {
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<otp::pid> leaders;
  for (int t = 0; t < teams; ++t)
    leaders.push_back(otp::spawn(leader, t, otp::self()));

  // Monitor every member of every team.
  std::map<otp::pid, int> team_of;
  for (int t = 0; t < teams; ++t) {
    auto up = co_await otp::receive<team_up>();
    for (auto& p : up.members) {
      team_of[p] = up.index;
      (void)otp::monitor(p);
    }
  }
  std::printf("%d teams of %d linked processes up, %zu monitors set, %zu processes alive\n\n", teams, team_size,
              team_of.size(), otp::this_scheduler().owner().process_count());
  for (auto& l : leaders)
    otp::send(l, go{});

  auto report = co_await otp::receive<trapped_report>();
  std::printf("team 1's leader traps exits: it got %d exit messages (killed) and lives on\n",
              report.exit_messages);
  otp::exit(leaders[1], otp::exit_reason::kill());
  std::printf("team 1's leader is sent exit(kill), which no process can trap\n");
  otp::send(leaders[2], go{});

  // Every process ends; tally how, team by team.
  std::map<int, std::map<std::string, int>> how;
  for (std::size_t i = 0; i < team_of.size(); ++i) {
    auto d = co_await otp::receive<otp::down_msg>();
    how[team_of[d.from]][d.reason.to_string()] += 1;
  }
  const char* story[teams] = {
    "one worker crashed; the crash went through the links to all",
    "10 killed by their leader, then the leader was killed; `killed` went through the links",
    "all finished normally; a normal exit travels nowhere",
    "all shut down; `shutdown` went back through the links to the leader",
  };
  std::printf("\nDOWN messages received, by team and reason:\n");
  for (auto& [t, reasons] : how) {
    std::printf("  team %d: %s\n", t, story[t]);
    for (auto& [r, count] : reasons)
      std::printf("          %5d x %s\n", count, r.c_str());
  }
  const auto ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  std::printf("\n%zu processes spawned, linked, monitored and stopped in %.1f ms\n", team_of.size(), ms);
}

} // namespace

int main() {
  otp::node node;
  std::printf("otp-cpp swarm on %u schedulers\n", node.scheduler_count());
  auto c = node.spawn_watch({}, coordinator);
  const auto why = c.exit.get();
  std::printf("coordinator exited: %s; processes left: %zu\n", why.to_string().c_str(), node.process_count());
  return why.is_normal() && node.process_count() == 0 ? 0 : 1;
}
