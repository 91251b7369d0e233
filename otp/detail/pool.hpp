// SPDX-License-Identifier: Apache-2.0
// otp/detail/pool.hpp - per-thread size-class free lists for frames and messages.
#pragma once

#include <cstddef>
#include <new>

namespace otp::detail {

// Small blocks (coroutine frames, messages, control-block extras) come from
// thread-local free lists fed by 64 KiB slabs: no malloc header per block,
// and a pop instead of a malloc call. First touch of fresh memory costs
// microseconds per page on these machines, so bytes per process are also
// time per spawn.
//
// Blocks move between threads: a message allocated by its sender is freed
// by its receiver. A thread whose list grows past two batches hands a batch
// to a global depot (one mutex per size class); a thread whose list is empty
// takes a batch from the depot before it carves a new slab. Slabs are never
// returned to the system: the pool's high-water mark stays, and is reused.
#if defined(__SANITIZE_ADDRESS__)
#define OTP_POOL_BYPASS 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define OTP_POOL_BYPASS 1
#endif
#endif

inline constexpr std::size_t pool_granularity = 16;
inline constexpr std::size_t pool_max_block = 1024;
inline constexpr std::size_t pool_classes = pool_max_block / pool_granularity;
inline constexpr std::size_t pool_batch = 32; // blocks moved to/from the depot at once

struct pool_block {
  pool_block* next;
};

// Trivial and constant-initialized, so that an access is a plain TLS load
// (no init guard); the flush at thread exit is registered on the slow path.
struct thread_pool {
  pool_block* free[pool_classes];
  std::size_t count[pool_classes];
};

extern constinit thread_local thread_pool this_thread_pool;

[[nodiscard]] constexpr std::size_t pool_class_of(std::size_t n) noexcept {
  return (n + pool_granularity - 1) / pool_granularity - 1;
}

// Fresh memory for the slabs and for the node's control blocks, in whole
// pages, from 256 KiB regions that the kernel pages in at once
// (MADV_POPULATE_WRITE): one call instead of a page fault per page
// (skynet's kernel time: 0.75 s -> 0.20 s). Pages given back wait for the
// next request of the same size; none go back to the system.
[[nodiscard]] void* take_pages(std::size_t bytes);
void give_pages(void* pages, std::size_t bytes) noexcept;
// Bytes of fresh memory take_pages handed out or holds since the program
// started (0 when bypassed).
[[nodiscard]] std::size_t pages_mapped() noexcept;

// Slow paths: refill an empty list; give a batch back when one is too long.
void pool_refill(thread_pool& p, std::size_t c);
void pool_spill(thread_pool& p, std::size_t c) noexcept;

/// Allocates `n` bytes, 16-aligned, from the calling thread's pool.
[[nodiscard]] inline void* pool_allocate(std::size_t n) {
#ifdef OTP_POOL_BYPASS
  // Under AddressSanitizer every block is its own allocation, so a use
  // after free of a frame or a message is caught rather than recycled.
  return ::operator new(n);
#endif
  if (n == 0 || n > pool_max_block)
    return ::operator new(n);
  auto& p = this_thread_pool;
  const auto c = pool_class_of(n);
  if (p.free[c] == nullptr)
    pool_refill(p, c);
  pool_block* b = p.free[c];
  p.free[c] = b->next;
  --p.count[c];
  return b;
}

/// Returns a block of `n` bytes obtained from pool_allocate on any thread.
inline void pool_deallocate(void* ptr, std::size_t n) noexcept {
#ifdef OTP_POOL_BYPASS
  ::operator delete(ptr);
  return;
#endif
  if (n == 0 || n > pool_max_block) {
    ::operator delete(ptr);
    return;
  }
  auto& p = this_thread_pool;
  const auto c = pool_class_of(n);
  auto* b = static_cast<pool_block*>(ptr);
  b->next = p.free[c];
  p.free[c] = b;
  if (++p.count[c] > 2 * pool_batch)
    pool_spill(p, c);
}

} // namespace otp::detail
