// SPDX-License-Identifier: Apache-2.0
// otp/detail/core_watch.hpp - how much of each scheduler's core other threads use.
#pragma once

#include <sys/types.h>
#include <time.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace otp::detail {

// For node_options::leave_shared_cores: which scheduler shares its core with
// another busy thread (a load generator, a second server), and which has its
// core to itself. Once a period, one idle scheduler reads the kernel's
// per-core busy time (/proc/stat) and each scheduler thread's own CPU time;
// the difference, on the core a scheduler's thread is pinned to, is what
// other threads took there. Unlike a probe that yields the core and times
// the yield, it is the same reading for a busy scheduler and an idle one,
// and gives the neighbour nothing (docs/design.md, "Leaving a shared core").
// Only Linux has the file: elsewhere, or where it cannot be read, nothing is
// known and nothing leaves.
class core_watch {
public:
  // Null where /proc/stat cannot be read.
  [[nodiscard]] static std::unique_ptr<core_watch> open(unsigned schedulers);
  explicit core_watch(unsigned schedulers);

  // From scheduler `i`'s thread, when it starts.
  void attach(unsigned i) noexcept;
  // From any thread, often: takes a sample when a period has passed since the
  // last and no other thread is taking one. True when it took one.
  bool sample() noexcept;
  // Permille of scheduler `i`'s core that other threads used lately (the
  // last period's when lower, else the mean of it and the one before); -1
  // while unknown (its thread is not pinned to one core, or no two samples
  // yet).
  [[nodiscard]] int others_permille(unsigned i) const noexcept {
    return slots_[i].others.load(std::memory_order_relaxed);
  }

  static constexpr std::int64_t period_ns = 100'000'000; // 100 ms

private:
  struct slot {
    std::atomic<pid_t> tid{0};        // 0 until attached
    std::atomic<clockid_t> clock{0};  // its thread's CPU-time clock
    std::atomic<int> others{-1};
    // Touched only by the thread holding `sampling_`.
    int cpu = -1;                     // at the last sample
    std::int64_t cpu_ns = 0;          // its thread's CPU time then
    bool fresh = false;               // on the same core at both samples
  };
  // Per-core busy time, from /proc/stat (ns); false if unreadable.
  bool read_cores(std::vector<std::int64_t>& busy_ns);

  std::unique_ptr<slot[]> slots_;
  unsigned count_;
  std::atomic<std::int64_t> next_ns_{0};
  std::atomic<bool> sampling_{false};
  // Touched only by the thread holding `sampling_`.
  std::int64_t sampled_ns_ = 0;
  std::vector<std::int64_t> core_busy_ns_;
  std::vector<std::int64_t> now_busy_ns_;
  std::vector<std::int64_t> ours_ns_;
  std::string text_;
  std::int64_t ns_per_tick_ = 10'000'000;
};

} // namespace otp::detail
