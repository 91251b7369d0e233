// SPDX-License-Identifier: Apache-2.0
// Runtime defects found by probing (lost wake-ups, crossing link/unlink,
// early timeouts, ...): each case failed before its fix.
#include "otp/detail/pool.hpp"
#include "otp/otp.hpp"

#include "tests/support/counted.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using otp::test::counted;

namespace {

otp::task<void> idle() {
  struct never {};
  co_await otp::receive<never>();
}

struct ask {
  otp::from<int> reply_to;
  int value;
};

// Answers each ask with ten times its value.
otp::task<void> tenfold() {
  for (;;) {
    ask a = co_await otp::receive<ask>();
    otp::reply(a.reply_to, a.value * 10);
  }
}

auto ask_for(const otp::pid& server, int v, otp::timeout t = 5s) {
  return otp::detail::call_process<int>(server, t, [v](const otp::from<int>& f) {
    return otp::detail::make_message<ask>(ask{f, v});
  });
}

} // namespace

TEST_SUITE_BEGIN("otp/exactness");

// --------------------------------------------------------------- wake-ups

TEST_CASE("a link and a monitor that reach a process of another scheduler as it exits are answered") {
  // The target exits on scheduler 1 while the link and monitor requests
  // are on their way: both must be answered (EXIT and DOWN with noproc or
  // the real reason) even though scheduler 1 then has nothing else to do.
  // No spin: an idle scheduler sleeps at once, and the sender's wake-up
  // call is still in progress while it reaps.
  otp::node n({.schedulers = 2, .pin_threads = false, .spin = 0us});
  constexpr int rounds = 20000;
  std::atomic<int> unanswered{0};
  std::atomic<int> done_rounds{0};
  auto w = n.spawn_watch({.scheduler = 0}, [&]() -> otp::task<void> {
    otp::trap_exit(true);
    for (int i = 0; i < rounds; ++i) {
      const otp::pid t = otp::spawn_opt({.scheduler = 1}, []() -> otp::task<void> { co_return; }).pid;
      otp::link(t);
      const otp::monitor_ref ref = otp::monitor(t);
      auto exit_msg = co_await otp::receive_for<otp::exit_msg>(2s, otp::exit_of{t});
      auto down = co_await otp::receive_for<otp::down_msg>(2s, otp::down_of{ref});
      if (!exit_msg || !down) {
        ++unanswered;
        break; // one is enough; do not wait out every round
      }
      ++done_rounds;
    }
  });
  REQUIRE(w.exit.get() == otp::exit_reason::normal());
  CHECK(unanswered == 0);
  CHECK(done_rounds == rounds);
}

TEST_CASE("a request pushed by a sender that holds an exiting process's block is answered when it lets go") {
  // The interleaving behind the lost wake-up, made deterministic: a sender
  // (this thread, standing in for another scheduler's process) has passed
  // the open check and holds the block while the target exits; it pushes a
  // monitor request, wakes the target's scheduler, and lets go only after
  // that scheduler went back to sleep without being able to reap.
  otp::node n({.schedulers = 2, .pin_threads = false, .spin = 0us});
  auto t = n.spawn_watch({.scheduler = 1}, idle);
  const otp::pid target = t.pid;
  otp::detail::process* block = target.control_block();
  block->refs.fetch_add(1, std::memory_order_acquire); // the sender's hold
  const otp::monitor_ref ref{12345};
  std::optional<otp::exit_reason> down;
  std::atomic<bool> registered{false};
  auto watcher = n.spawn_watch({.scheduler = 0}, [&down, &registered, ref, target]() -> otp::task<void> {
    // The watcher's half of the monitor, as otp::monitor would record it.
    otp::detail::current_process()->ext().monitors.insert(ref, target);
    registered = true;
    auto d = co_await otp::receive_for<otp::down_msg>(5s, otp::down_of{ref});
    if (d)
      down = d->reason;
  });
  n.exit(target, otp::exit_reason::kill());
  REQUIRE(t.exit.get() == otp::exit_reason::killed());
  while (!n.get_scheduler(1).sleeping() || !registered)
    std::this_thread::yield();
  auto* s = otp::detail::make_signal(otp::detail::item_kind::monitor, watcher.pid);
  s->ref = ref;
  otp::detail::item* head = block->inbox.load();
  do {
    s->next = head;
  } while (!block->inbox.compare_exchange_weak(head, s));
  if (head == nullptr && !block->notified.exchange(true))
    block->home()->remote_enqueue(block);
  while (!n.get_scheduler(1).sleeping())
    std::this_thread::yield();
  block->refs.fetch_sub(1, std::memory_order_release); // lets go, wakes nobody
  REQUIRE(watcher.exit.get() == otp::exit_reason::normal());
  REQUIRE(down);
  CHECK(*down == otp::exit_reason::noproc());
}

// ------------------------------------------------------------ reply slots

TEST_CASE("two outstanding calls from one process each get their own reply") {
  otp::node n({.deterministic = true});
  const otp::pid s1 = n.spawn(tenfold);
  const otp::pid s2 = n.spawn(tenfold);
  std::vector<int> got;
  n.spawn([&]() -> otp::task<void> {
    auto a = ask_for(s1, 1);
    auto b = ask_for(s2, 2);
    auto rb = co_await b; // awaited in the other order
    auto ra = co_await a;
    got.push_back(ra ? ra.value() : -1);
    got.push_back(rb ? rb.value() : -1);
    auto c = ask_for(s1, 3);
    auto d = ask_for(s1, 4);
    auto rc = co_await c;
    auto rd = co_await d;
    got.push_back(rc ? rc.value() : -1);
    got.push_back(rd ? rd.value() : -1);
  });
  n.run_until_idle();
  CHECK(got == std::vector<int>{10, 20, 30, 40});
}

TEST_CASE("a call abandoned by timeout leaves the other outstanding call's reply alone") {
  otp::node n({.deterministic = true});
  const otp::pid silent = n.spawn(idle);
  const otp::pid s = n.spawn(tenfold);
  std::optional<bool> first_timed_out;
  int second = 0;
  n.spawn([&]() -> otp::task<void> {
    auto a = ask_for(silent, 1, 10ms);
    auto b = ask_for(s, 2);
    auto ra = co_await a;
    first_timed_out = !ra && ra.error() == otp::errc::timeout;
    auto rb = co_await b;
    second = rb ? rb.value() : -1;
  });
  n.run_until_idle();
  n.advance(10ms);
  REQUIRE(first_timed_out);
  CHECK(*first_timed_out);
  CHECK(second == 20);
}

// ------------------------------------------------------- control blocks

TEST_CASE("control blocks come back when processes are spawned onto another scheduler") {
  otp::node n({.schedulers = 2, .pin_threads = false});
  auto w = n.spawn_watch({.scheduler = 0}, []() -> otp::task<void> {
    for (int batch = 0; batch < 200; ++batch) {
      std::vector<otp::monitor_ref> refs;
      for (int i = 0; i < 1000; ++i)
        refs.push_back(otp::spawn_opt({.scheduler = 1, .monitor = true}, []() -> otp::task<void> { co_return; })
                         .monitor);
      for (auto r : refs)
        co_await otp::receive<otp::down_msg>(otp::down_of{r});
    }
  });
  REQUIRE(w.exit.get() == otp::exit_reason::normal());
  // 200,000 spawns; at most a few batches in use at once, plus each
  // scheduler's spare batch (before the fix: one block per spawn).
  MESSAGE("control blocks allocated for 200,000 spawns: " << n.blocks_allocated());
  CHECK(n.blocks_allocated() < 20000);
}

TEST_CASE("control blocks come back when processes are spawned from a thread that is not a scheduler") {
  otp::node n({.schedulers = 2, .pin_threads = false});
  for (int batch = 0; batch < 100; ++batch) {
    std::vector<otp::watched_process> ws;
    for (int i = 0; i < 1000; ++i)
      ws.push_back(n.spawn_watch({}, []() -> otp::task<void> { co_return; }));
    for (auto& w : ws)
      (void)w.exit.get();
  }
  MESSAGE("control blocks allocated for 100,000 spawns from main: " << n.blocks_allocated());
  CHECK(n.blocks_allocated() < 20000);
}

TEST_CASE("the memory of a node that ended serves the next node") {
  // Control blocks and pool slabs come from mapped pages that are never
  // unmapped; a program that starts node after node must not map more each time.
  auto run_node = [] {
    otp::node n({.schedulers = 2, .pin_threads = false});
    for (int i = 0; i < 20000; ++i)
      REQUIRE(n.spawn([]() -> otp::task<void> { co_await idle(); }));
  }; // its processes are torn down, and its chunks of control blocks given back
  // How the blocks spread over the threads' free lists varies from run to
  // run, so the high-water mark does too: reach it with three nodes, then
  // seven more may not map another node's worth of control blocks (each
  // node mapped that much before its pages were reused).
  for (int i = 0; i < 3; ++i)
    run_node();
  const std::size_t after_three = otp::detail::pages_mapped();
  for (int i = 0; i < 7; ++i)
    run_node();
  const std::size_t grown = otp::detail::pages_mapped() - after_three;
  MESSAGE("bytes mapped after three nodes: " << after_three << ", by seven more: " << grown);
  CHECK(grown < 20000 * sizeof(otp::detail::process));
#ifndef OTP_POOL_BYPASS
  CHECK(after_three >= 20000 * sizeof(otp::detail::process)); // the blocks came from these pages
#endif
}

TEST_CASE("pages of a region that one request leaves serve the smaller requests after it") {
#ifdef OTP_POOL_BYPASS
  MESSAGE("the pool is bypassed: every request is its own allocation");
#else
  // Slabs and chunks of control blocks are cut from the same 256 KiB
  // regions. A large request that does not fit the rest of a region takes
  // a new one; the old rest must still serve smaller requests, or a
  // million spawns page in 10% more than they use. Sizes no node gives
  // back, so no returned list serves them.
  constexpr std::size_t small = 20 << 10;
  constexpr std::size_t large = 100 << 10;
  const std::size_t before = otp::detail::pages_mapped();
  std::size_t taken = 0;
  for (int i = 0; i < 100; ++i) {
    for (int j = 0; j < 3; ++j) {
      REQUIRE(otp::detail::take_pages(small) != nullptr);
      taken += small;
    }
    REQUIRE(otp::detail::take_pages(large) != nullptr);
    taken += large;
  }
  const std::size_t grown = otp::detail::pages_mapped() - before;
  MESSAGE("bytes taken: " << taken << ", paged in for them: " << grown);
  // One rest per region unused (16,000 KiB took 25,600): 60% more; two
  // rests kept: 7% more.
  CHECK(grown <= taken + taken / 8);
#endif
}

TEST_CASE("a block freed on another thread goes home to the thread that carved its slab") {
#ifdef OTP_POOL_BYPASS
  MESSAGE("the pool is bypassed: every request is its own allocation");
#else
  // Reused where it was freed, a frame shared its cache lines with the
  // carver's blocks on either side, and two schedulers wrote one line in
  // turn (docs/design.md, "Blocks go home").
  constexpr std::size_t size = 48;
  constexpr std::size_t n = 4 * otp::detail::pool_batch;
  const std::size_t c = otp::detail::pool_class_of(size);
  std::vector<void*> carved, reused_there, came_home;
  std::thread carver([&] {
    // Blocks whose slab this thread's record holds: a block from the depot
    // may be another's, and goes home there.
    std::vector<void*> others;
    while (carved.size() < n) {
      void* b = otp::detail::pool_allocate(size);
      (otp::detail::pool_home_of(b) == otp::detail::this_thread_pool.owner ? carved : others).push_back(b);
    }
    std::thread other([&] {
      for (void* b : carved)
        otp::detail::pool_deallocate(b, size);
      for (std::size_t i = 0; i < n; ++i)
        reused_there.push_back(otp::detail::pool_allocate(size));
      for (void* b : reused_there)
        otp::detail::pool_deallocate(b, size);
    });
    other.join();
    // Empty this thread's list; the next refill takes what came home.
    std::vector<void*> rest;
    for (std::size_t left = otp::detail::this_thread_pool.count[c]; left > 0; --left)
      rest.push_back(otp::detail::pool_allocate(size));
    for (std::size_t i = 0; i < n; ++i)
      came_home.push_back(otp::detail::pool_allocate(size));
    for (void* b : rest)
      otp::detail::pool_deallocate(b, size);
    for (void* b : came_home)
      otp::detail::pool_deallocate(b, size);
    for (void* b : others)
      otp::detail::pool_deallocate(b, size);
  });
  carver.join();
  const auto carved_one = [&](void* b) { return std::find(carved.begin(), carved.end(), b) != carved.end(); };
  CHECK(std::none_of(reused_there.begin(), reused_there.end(), carved_one));
  CHECK(std::all_of(came_home.begin(), came_home.end(), carved_one));
#endif
}

TEST_CASE("a message's block stays with the thread that frees it") {
#ifdef OTP_POOL_BYPASS
  MESSAGE("the pool is bypassed: every request is its own allocation");
#else
  // A receiver reuses the block of a message it read for the next one it
  // sends; sent home, its line would cross the cores once more.
  constexpr std::size_t size = 64;
  std::vector<void*> sent, reused;
  std::thread sender([&] {
    for (std::size_t i = 0; i < otp::detail::pool_batch; ++i)
      sent.push_back(otp::detail::pool_allocate(size));
    std::thread receiver([&] {
      for (void* b : sent)
        otp::detail::pool_deallocate_here(b, size);
      for (std::size_t i = 0; i < sent.size(); ++i)
        reused.push_back(otp::detail::pool_allocate(size));
      for (void* b : reused)
        otp::detail::pool_deallocate_here(b, size);
    });
    receiver.join();
  });
  sender.join();
  std::sort(sent.begin(), sent.end());
  std::sort(reused.begin(), reused.end());
  CHECK(sent == reused);
#endif
}

TEST_CASE("blocks sent home after their thread exited serve the thread after it") {
#ifdef OTP_POOL_BYPASS
  MESSAGE("the pool is bypassed: every request is its own allocation");
#else
  // A thread's record of home outlives it and passes to the next thread
  // that carves, with what came home meanwhile; nothing is stranded.
  constexpr std::size_t size = 80;
  constexpr int n = 20000; // about 1.6 MB a round
  std::vector<void*> blocks;
  const auto round = [&] {
    std::thread carver([&] {
      for (int i = 0; i < n; ++i)
        blocks.push_back(otp::detail::pool_allocate(size));
    });
    carver.join();
    std::thread freer([&] {
      for (void* b : blocks)
        otp::detail::pool_deallocate(b, size);
    });
    freer.join();
    blocks.clear();
  };
  round();
  const std::size_t before = otp::detail::pages_mapped();
  for (int i = 0; i < 20; ++i)
    round();
  const std::size_t grown = otp::detail::pages_mapped() - before;
  MESSAGE("paged in by 20 more rounds of " << n * size << " bytes: " << grown);
  CHECK(grown < n * size);
#endif
}

TEST_CASE("a spawn from another thread that races the node's shutdown is torn down, not lost") {
  for (int round = 0; round < 100; ++round) {
    counted::reset();
    std::atomic<int> spawned{0};
    {
      otp::node n({.schedulers = 2, .pin_threads = false});
      std::thread spawner([&] {
        for (;;) {
          const otp::pid p = n.spawn([](counted) -> otp::task<void> { co_await idle(); }, counted{});
          if (!p)
            return; // the node is stopping
          ++spawned;
        }
      });
      while (spawned < 50)
        std::this_thread::yield();
      n.shutdown();
      spawner.join();
    }
    REQUIRE(counted::alive() == 0);
  }
}

// ------------------------------------------------------------- alignment

namespace {
struct alignas(128) wide {
  static inline std::atomic<int> misplaced = 0;
  int v = 0;
  explicit wide(int x) : v(x) { check(); }
  wide(const wide& o) : v(o.v) { check(); }
  wide(wide&& o) noexcept : v(o.v) { check(); }
  wide& operator=(const wide&) = default;
  ~wide() = default;
  void check() const {
    // Through a volatile: the compiler may otherwise assume the alignment.
    volatile std::uintptr_t at = reinterpret_cast<std::uintptr_t>(this);
    if (at % alignof(wide) != 0)
      ++misplaced;
  }
};
// Built outside a coroutine, and not inlined into one: a temporary in a
// coroutine frame is only 16-aligned (docs/design.md, toolchain pitfalls).
[[gnu::noinline]] void send_wide(const otp::pid& to, int v) { otp::send(to, wide{v}); }

} // namespace

TEST_CASE("a message type aligned to more than 16 bytes is built where it fits") {
  otp::node n({.deterministic = true});
  int got = 0;
  n.spawn([&]() -> otp::task<void> {
    for (int i = 1; i <= 64; ++i)
      send_wide(otp::self(), i);
    // Read in place: a coroutine frame itself is only 16-aligned (neither
    // clang 19 nor g++ 12 honours a local's larger alignment in a frame).
    for (int i = 1; i <= 64; ++i)
      got += co_await otp::receive([](wide&& w) { return w.v; });
  });
  n.run_until_idle();
  CHECK(got == 64 * 65 / 2);
  CHECK(wide::misplaced == 0);
}

// ------------------------------------------------------- exit to oneself

TEST_CASE("exit(self(), kill) and the end of the body: the process ends killed") {
  otp::node n({.deterministic = true});
  std::optional<otp::exit_reason> down;
  bool after = false;
  n.spawn([&]() -> otp::task<void> {
    otp::spawn_monitor([&after]() -> otp::task<void> {
      otp::exit(otp::self(), otp::exit_reason::kill());
      after = true; // not reached: as in Erlang, the signal takes effect at once
      co_return;
    });
    down = (co_await otp::receive<otp::down_msg>()).reason;
  });
  n.run_until_idle();
  REQUIRE(down);
  CHECK(*down == otp::exit_reason::killed());
  CHECK_FALSE(after);
}

TEST_CASE("exit(self(), R) that the body catches still ends the process with R") {
  otp::node n({.deterministic = true});
  std::optional<otp::exit_reason> down;
  n.spawn([&]() -> otp::task<void> {
    otp::spawn_monitor([]() -> otp::task<void> {
      try {
        otp::exit(otp::self(), otp::exit_reason::error("boom"));
      } catch (...) {
      }
      co_return; // ends before any suspension: the queued signal decides
    });
    down = (co_await otp::receive<otp::down_msg>()).reason;
  });
  n.run_until_idle();
  REQUIRE(down);
  CHECK(*down == otp::exit_reason::error("boom"));
}

TEST_CASE("exit(self(), R) while trapping exits is an 'EXIT' message, and the process goes on") {
  otp::node n({.deterministic = true});
  std::optional<otp::exit_reason> got;
  n.spawn([&]() -> otp::task<void> {
    otp::trap_exit(true);
    otp::exit(otp::self(), otp::exit_reason::error("note"));
    got = (co_await otp::receive<otp::exit_msg>()).reason;
  });
  n.run_until_idle();
  REQUIRE(got);
  CHECK(*got == otp::exit_reason::error("note"));
}

// ------------------------------------------------------------------ links

TEST_CASE("link and unlink crossing a link from the other side leave both sides agreeing") {
  // A: link(B), unlink(B); B at the same time: link(A). OTP's answer is
  // either both linked or neither, never one side only.
  otp::node n({.schedulers = 2, .pin_threads = false});
  struct go {};
  struct sync {
    otp::pid from;
  };
  struct verdict {
    bool linked;
  };
  std::atomic<int> one_sided{0};
  std::atomic<int> both{0};
  auto w = n.spawn_watch({.scheduler = 0}, [&]() -> otp::task<void> {
    const otp::pid me = otp::self();
    for (int round = 0; round < 5000 && one_sided == 0; ++round) {
      auto side = [](otp::pid driver, bool is_a) -> otp::task<void> {
        const otp::pid peer = (co_await otp::receive<sync>()).from;
        co_await otp::receive<go>();
        if (is_a) {
          otp::link(peer);
          otp::unlink(peer);
        } else {
          otp::link(peer);
        }
        // Each side's signals reach the other before this message.
        otp::send(peer, sync{otp::self()});
        co_await otp::receive<sync>();
        otp::send(peer, sync{otp::self()}); // and an ack of an unlink before this one
        co_await otp::receive<sync>();
        auto info = co_await otp::get_process_info(otp::self());
        otp::send(driver, verdict{info && !info->links.empty()});
        co_await idle();
      };
      const otp::pid a = otp::spawn_opt({.scheduler = 0}, side, me, true).pid;
      const otp::pid b = otp::spawn_opt({.scheduler = 1}, side, me, false).pid;
      otp::send(a, sync{b});
      otp::send(b, sync{a});
      otp::send(a, go{});
      otp::send(b, go{});
      const bool la = (co_await otp::receive<verdict>()).linked;
      const bool lb = (co_await otp::receive<verdict>()).linked;
      if (la != lb)
        ++one_sided;
      if (la && lb)
        ++both;
      otp::unlink(a); // no-op: the driver is not linked
      otp::exit(a, otp::exit_reason::kill());
      otp::exit(b, otp::exit_reason::kill());
    }
  });
  REQUIRE(w.exit.get() == otp::exit_reason::normal());
  CHECK(one_sided == 0);
  MESSAGE("rounds ending linked both ways: " << both.load());
}

// ----------------------------------------------------------------- timers

TEST_CASE("timeouts never fire early on the real clock") {
  otp::node n({.schedulers = 2, .pin_threads = false});
  std::atomic<int> early{0};
  std::atomic<int> finished{0};
  constexpr int procs = 100;
  std::vector<otp::watched_process> ws;
  for (int i = 0; i < procs; ++i) {
    ws.push_back(n.spawn_watch({}, [&]() -> otp::task<void> {
      struct never {};
      auto t0 = std::chrono::steady_clock::now();
      co_await otp::sleep_for(260ms);
      if (std::chrono::steady_clock::now() - t0 < 260ms)
        ++early;
      t0 = std::chrono::steady_clock::now();
      (void)co_await otp::receive_for<never>(256ms);
      if (std::chrono::steady_clock::now() - t0 < 256ms)
        ++early;
      t0 = std::chrono::steady_clock::now();
      otp::send_after(300ms, otp::self(), 1);
      co_await otp::receive<int>();
      if (std::chrono::steady_clock::now() - t0 < 300ms)
        ++early;
      ++finished;
    }));
  }
  for (auto& w : ws)
    (void)w.exit.get();
  CHECK(finished == procs);
  CHECK(early == 0);
}

TEST_CASE("a timeout too long to add to the clock is forever, not at once") {
  otp::node n({.deterministic = true});
  std::optional<bool> received_in_time;
  bool slept = false;
  int timer_fired = 0;
  n.spawn([&]() -> otp::task<void> {
    otp::send_after(std::chrono::steady_clock::duration::max(), otp::self(), 99);
    auto r = co_await otp::receive_for<int>(std::chrono::steady_clock::duration::max());
    received_in_time = r.has_value() && *r == 1;
    co_await otp::sleep_for(std::chrono::steady_clock::duration::max());
    slept = true;
  });
  n.spawn([&]() -> otp::task<void> {
    // A call with a timeout longer than the clock can hold waits forever.
    const otp::pid silent = otp::spawn(idle);
    auto r = co_await ask_for(silent, 1, std::chrono::hours::max());
    timer_fired = r ? 1 : 2;
  });
  n.run_until_idle();
  n.advance(24h * 365);
  CHECK_FALSE(received_in_time);
  CHECK(timer_fired == 0);
  CHECK_FALSE(slept);
}

TEST_CASE("sleep_for leaves the mailbox as it is, in order") {
  otp::node n({.deterministic = true});
  std::vector<int> got;
  n.spawn([&]() -> otp::task<void> {
    for (int i = 0; i < 1000; ++i)
      otp::send(otp::self(), i);
    co_await otp::sleep_for(5ms);
    co_await otp::sleep_for(0ms);
    for (int i = 0; i < 1000; ++i)
      got.push_back(co_await otp::receive<int>());
  });
  n.run_until_idle();
  CHECK(got.empty());
  n.advance(5ms);
  REQUIRE(got.size() == 1000);
  CHECK(got.front() == 0);
  CHECK(got.back() == 999);
}

TEST_SUITE_END();
