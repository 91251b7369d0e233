// SPDX-License-Identifier: Apache-2.0
// otp/detail/spin_lock.hpp - a lock for critical sections of a few instructions.
#pragma once

#include <atomic>
#include <thread>


namespace otp::detail {

// Schedulers hand control-block batches to each other through the node a
// few times per hundred spawns; a std::mutex there put the losing thread to
// sleep in the kernel (measured: 40x the context switches on skynet). The
// holder only pushes or pops a vector entry, so the other thread spins.
class spin_lock {
public:
  void lock() noexcept {
    for (unsigned spins = 0; flag_.exchange(true, std::memory_order_acquire);) {
      while (flag_.load(std::memory_order_relaxed)) {
        if (++spins < 1024) {
#if defined(__x86_64__) || defined(__i386__)
          __builtin_ia32_pause(); // _mm_pause without <immintrin.h>'s 35k lines
#endif
        } else {
          std::this_thread::yield(); // the holder was preempted
        }
      }
    }
  }
  void unlock() noexcept { flag_.store(false, std::memory_order_release); }

private:
  std::atomic<bool> flag_{false};
};

} // namespace otp::detail
