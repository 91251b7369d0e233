// SPDX-License-Identifier: Apache-2.0
#include "otp/detail/pool.hpp"

#include <mutex>
#include <vector>

namespace otp::detail {

namespace {

constexpr std::size_t slab_bytes = std::size_t{64} << 10;

struct batch {
  pool_block* head;
  std::size_t count;
};

struct depot_class {
  std::mutex mutex;
  std::vector<batch> batches;
};

struct depot {
  depot_class classes[pool_classes];
  std::mutex slab_mutex;
  std::vector<void*> slabs; // kept for the life of the program, reachable
};

depot& the_depot() {
  // Never destroyed: threads (and their pools) may outlive static destruction.
  static depot* d = new depot;
  return *d;
}

// Hands a thread's blocks back to the depot when the thread exits.
struct pool_flusher {
  ~pool_flusher();
};

} // namespace

constinit thread_local thread_pool this_thread_pool{};

void pool_refill(thread_pool& p, std::size_t c) {
  thread_local pool_flusher flusher; // registered once per thread, here off the fast path
  (void)flusher;
  auto& d = the_depot();
  {
    std::lock_guard lock(d.classes[c].mutex);
    auto& batches = d.classes[c].batches;
    if (!batches.empty()) {
      p.free[c] = batches.back().head;
      p.count[c] = batches.back().count;
      batches.pop_back();
      return;
    }
  }
  // Carve a fresh slab into blocks of this class.
  const std::size_t size = (c + 1) * pool_granularity;
  auto* slab = static_cast<char*>(::operator new(slab_bytes));
  {
    std::lock_guard lock(d.slab_mutex);
    d.slabs.push_back(slab);
  }
  pool_block* head = nullptr;
  std::size_t n = slab_bytes / size;
  for (std::size_t i = n; i > 0; --i) {
    auto* b = reinterpret_cast<pool_block*>(slab + (i - 1) * size);
    b->next = head;
    head = b;
  }
  p.free[c] = head;
  p.count[c] = n;
}

void pool_spill(thread_pool& p, std::size_t c) noexcept {
  // Detach pool_batch blocks from the front and hand them to the depot.
  pool_block* first = p.free[c];
  pool_block* last = first;
  for (std::size_t i = 1; i < pool_batch; ++i)
    last = last->next;
  p.free[c] = last->next;
  last->next = nullptr;
  p.count[c] -= pool_batch;
  auto& d = the_depot();
  try {
    std::lock_guard lock(d.classes[c].mutex);
    d.classes[c].batches.push_back({first, pool_batch});
  } catch (...) {
    // Could not grow the depot's vector: keep the blocks here instead.
    last->next = p.free[c];
    p.free[c] = first;
    p.count[c] += pool_batch;
  }
}

pool_flusher::~pool_flusher() {
  // A thread's blocks go back to the depot, where other threads find them.
  auto& p = this_thread_pool;
  auto& d = the_depot();
  for (std::size_t c = 0; c < pool_classes; ++c) {
    if (p.free[c] == nullptr)
      continue;
    try {
      std::lock_guard lock(d.classes[c].mutex);
      d.classes[c].batches.push_back({p.free[c], p.count[c]});
    } catch (...) {
      // Out of memory at thread exit: the blocks stay in their slabs, unused.
    }
    p.free[c] = nullptr;
    p.count[c] = 0;
  }
}

} // namespace otp::detail
