// SPDX-License-Identifier: Apache-2.0
// otp/detail/pool.hpp - per-thread size-class free lists for frames and messages.
#pragma once

#include <cstddef>
#include <new>

namespace otp::detail {

// Small blocks (coroutine frames, messages, control blocks) are recycled
// through thread-local free lists: first touch of fresh memory costs
// microseconds per page on these machines, and malloc's cross-thread path is
// slower than a pop. A block freed on another thread joins that thread's
// list; each list is capped so that one-way traffic (fan-in) cannot hoard
// memory: beyond the cap, blocks go back to operator delete.
inline constexpr std::size_t pool_granularity = 16;
inline constexpr std::size_t pool_max_block = 1024;
inline constexpr std::size_t pool_classes = pool_max_block / pool_granularity;
inline constexpr std::size_t pool_cap_bytes = std::size_t{4} << 20; // per class

struct pool_block {
  pool_block* next;
};

struct thread_pool {
  pool_block* free[pool_classes] = {};
  std::size_t count[pool_classes] = {};

  thread_pool() = default;
  thread_pool(const thread_pool&) = delete;
  thread_pool& operator=(const thread_pool&) = delete;
  ~thread_pool();
};

thread_pool& this_thread_pool() noexcept;

[[nodiscard]] constexpr std::size_t pool_class_of(std::size_t n) noexcept {
  return (n + pool_granularity - 1) / pool_granularity - 1;
}

/// Allocates `n` bytes, 16-aligned, from the calling thread's pool.
[[nodiscard]] inline void* pool_allocate(std::size_t n) {
  if (n == 0 || n > pool_max_block)
    return ::operator new(n);
  auto& p = this_thread_pool();
  auto c = pool_class_of(n);
  if (auto* b = p.free[c]) {
    p.free[c] = b->next;
    --p.count[c];
    return b;
  }
  return ::operator new((c + 1) * pool_granularity);
}

/// Returns a block of `n` bytes obtained from pool_allocate on any thread.
inline void pool_deallocate(void* ptr, std::size_t n) noexcept {
  if (n == 0 || n > pool_max_block) {
    ::operator delete(ptr);
    return;
  }
  auto& p = this_thread_pool();
  auto c = pool_class_of(n);
  if (p.count[c] * (c + 1) * pool_granularity >= pool_cap_bytes) {
    ::operator delete(ptr);
    return;
  }
  auto* b = static_cast<pool_block*>(ptr);
  b->next = p.free[c];
  p.free[c] = b;
  ++p.count[c];
}

} // namespace otp::detail
