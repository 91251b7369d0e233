// SPDX-License-Identifier: Apache-2.0
// otp/detail/pool.hpp - per-thread size-class free lists for frames and messages.
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>

namespace otp::detail {

// Small blocks (coroutine frames, messages, control-block extras) come from
// thread-local free lists fed by 64 KiB slabs: no malloc header per block,
// and a pop instead of a malloc call. First touch of fresh memory costs
// microseconds per page on these machines, so bytes per process are also
// time per spawn.
//
// Blocks move between threads: a message allocated by its sender is freed
// by its receiver, a frame by the scheduler its process moved to. A frame
// (or a process's extras) goes home, to the thread that carved its slab
// (the slab's header names that thread's pool_owner): it waits in a
// per-class list with others for the same home, then goes over in one CAS.
// Reused where it was freed instead, it shared cache lines with blocks the
// carver kept using, and two schedulers wrote one line in turn. Messages and
// signals stay where they are freed, and take whole lines so that they share
// none (item.hpp). docs/design.md, "Blocks go home", has the measurements.
//
// A thread whose list grows past two batches hands a batch to a global
// depot; a thread whose list is empty takes first what came home, then a
// batch from the depot, and only then carves a new slab. Slabs are never
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
inline constexpr std::size_t pool_batch = 32; // blocks moved to/from the depot (or home) at once
inline constexpr std::size_t slab_bytes = std::size_t{64} << 10; // slabs start on a multiple of this

struct pool_block {
  pool_block* next;
};

// What a thread's slabs name as their home (pool.cpp). A record outlives its
// thread and passes to the next thread that carves, so a block freed late
// still has a home.
struct pool_owner;

// A slab's first bytes. No block starts in a slab's first cache line (each
// class's colour, pool.cpp, is at least 64 bytes), so reading the header
// shares no line with a block in use.
struct slab_header {
  pool_owner* owner;
};

// Trivial and constant-initialized, so that an access is a plain TLS load
// (no init guard); the flush at thread exit is registered on the slow path.
struct thread_pool {
  pool_owner* owner; // this thread's slabs' home; null until it first refills
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
// A slab: slab_bytes of fresh memory, aligned to slab_bytes, from regions
// that serve slabs only (four a region).
[[nodiscard]] void* take_slab();
// Bytes of fresh memory take_pages handed out or holds since the program
// started (0 when bypassed).
[[nodiscard]] std::size_t pages_mapped() noexcept;

// Slow paths: refill an empty list; give a batch back when one is too long;
// send a block carved by another thread home.
void pool_refill(thread_pool& p, std::size_t c);
void pool_spill(thread_pool& p, std::size_t c) noexcept;
void pool_send_home(pool_block* b, std::size_t c, pool_owner* home) noexcept;

[[nodiscard]] inline pool_owner* pool_home_of(const void* block) noexcept {
  const auto slab = reinterpret_cast<std::uintptr_t>(block) & ~(slab_bytes - 1);
  return reinterpret_cast<const slab_header*>(slab)->owner;
}

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

enum class freed_block : bool { goes_home, stays };

template <freed_block Where>
inline void pool_free(void* ptr, std::size_t n) noexcept {
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
  if constexpr (Where == freed_block::goes_home) {
    if (auto* home = pool_home_of(b); home != p.owner) [[unlikely]] {
      pool_send_home(b, c, home);
      return;
    }
  }
  b->next = p.free[c];
  p.free[c] = b;
  if (++p.count[c] > 2 * pool_batch)
    pool_spill(p, c);
}

/// Returns a block of `n` bytes obtained from pool_allocate on any thread.
/// For what lives as long as a process (frames, extras): a block carved by
/// another thread goes home to it.
inline void pool_deallocate(void* ptr, std::size_t n) noexcept {
  pool_free<freed_block::goes_home>(ptr, n);
}

/// As pool_deallocate, for messages and signals: the block stays with the
/// thread that frees it. A message lives for one delivery, and a receiver
/// that reuses its block for the next message it sends writes a line it has
/// just read; sent home, the line crossed the cores once more
/// (ping_pong_cross_ns 298 -> 335 ns).
inline void pool_deallocate_here(void* ptr, std::size_t n) noexcept {
  pool_free<freed_block::stays>(ptr, n);
}

} // namespace otp::detail
