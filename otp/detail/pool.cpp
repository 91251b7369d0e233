// SPDX-License-Identifier: Apache-2.0
#include "otp/detail/pool.hpp"
#include "otp/detail/spin_lock.hpp"

#include <sys/mman.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <new>
#include <utility>
#include <vector>

namespace otp::detail {

namespace {

struct batch {
  pool_block* head;
  std::size_t count;
};

// Every scheduler spills and refills here, a batch per 32 frees or
// allocations of a class: with a std::mutex the losing thread slept in the
// kernel (skynet at two schedulers: ~250 futex waits a run on the depot
// and the page source). The holder only pushes or pops a vector entry.
struct depot_class {
  spin_lock mutex;
  std::vector<batch> batches;
};

struct depot {
  depot_class classes[pool_classes];
};

constexpr std::size_t page_bytes = 4096;
constexpr std::size_t region_bytes = std::size_t{256} << 10;
// Address space is reserved this much at a time, and each region of it paged
// in on its own (MADV_POPULATE_WRITE). A mapping takes the process's mmap
// lock for writing, and paging in holds it for reading: with a mapping per
// region (MAP_POPULATE), two schedulers took turns, and skynet at two
// schedulers ran 1.10-1.16x faster than at one instead of 1.4-1.5x
// (docs/design.md, "The page source").
constexpr std::size_t reserve_bytes = std::size_t{8} << 20;
// Each thread cuts its regions from a block of its own, aligned to the span
// of one page table: paging in takes that table's lock, and two schedulers
// paging in neighbouring regions of one block spun on it (5.8% of skynet's
// time at two schedulers).
constexpr std::size_t block_bytes = std::size_t{2} << 20;
static_assert(region_bytes % slab_bytes == 0 && block_bytes % region_bytes == 0,
              "regions start on a multiple of slab_bytes");

// take_pages and give_pages round alike, so a size given back finds its list.
constexpr std::size_t whole_pages(std::size_t bytes) noexcept {
  return (bytes + page_bytes - 1) / page_bytes * page_bytes;
}

struct given_pages {
  given_pages* next;
};

// A slab region paged in by a thread that found another's already there.
struct spare_region {
  spare_region* next;
};

// Pages of a region not handed out yet.
struct page_span {
  char* at = nullptr;
  std::size_t bytes = 0;
  char* cut(std::size_t n) noexcept {
    bytes -= n;
    return std::exchange(at, at + n);
  }
};

struct page_source {
  // Held for a list or a rest's few instructions, never across a system
  // call: a std::mutex here put the losing scheduler to sleep in the kernel
  // (~40 futex waits a run of skynet at two schedulers).
  spin_lock mutex;
  // The two largest rests of the regions paged in so far; requests use the
  // smaller first. With one rest, a slab (64 KiB) that did not fit left the
  // rest unused although chunks of control blocks (8 KiB) would have: 10%
  // of skynet's memory paged in for nothing (docs/design.md, "The page source").
  page_span tail;
  page_span spare;
  char* reserve = nullptr; // the newest reservation's blocks not taken yet
  std::size_t reserve_left = 0;
  struct returned {
    std::size_t bytes;
    given_pages* head;
  };
  std::vector<returned> returned_lists; // one list per size given back
  // Slabs come from regions of their own, cut in four: a region starts on a
  // multiple of its size, so every slab starts on a multiple of slab_bytes
  // and a block finds its slab's header by masking its address.
  page_span slabs;
  spare_region* spare_regions = nullptr;
};

page_source& the_page_source() {
  static page_source* s = new page_source; // never destroyed, as the depot
  return *s;
}

std::atomic<std::size_t> mapped_bytes{0};

// The calling thread's block: address space, paged in region by region. A
// thread that exits leaves the rest of its block unused, but none of it was
// paged in.
constinit thread_local char* block_next = nullptr;
constinit thread_local std::size_t block_left = 0;

// A block of address space, not paged in. A new reservation is mapped
// outside the source's lock: mmap waits for the process's mmap lock, which
// another thread paging in a region holds, and the other threads would
// wait behind it for pages they already have.
char* reserve_block(page_source& s) {
  {
    std::lock_guard lock(s.mutex);
    if (s.reserve_left >= block_bytes) {
      s.reserve_left -= block_bytes;
      return std::exchange(s.reserve, s.reserve + block_bytes);
    }
  }
  // One block more than needed, so that the blocks can start aligned.
  void* m = ::mmap(nullptr, reserve_bytes + block_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED)
    throw std::bad_alloc();
  auto* at = reinterpret_cast<char*>((reinterpret_cast<std::uintptr_t>(m) + block_bytes - 1) & ~(block_bytes - 1));
  std::lock_guard lock(s.mutex);
  // Another thread may have mapped one meanwhile: the rest of that one
  // stays unused (address space only, none of it was paged in).
  s.reserve = at + block_bytes;
  s.reserve_left = reserve_bytes - block_bytes;
  return at;
}

// The next region of the calling thread's block, paged in. Called outside
// the source's lock: paging in takes a millisecond on a slow VM, and the
// other schedulers may need pages meanwhile. A kernel without
// MADV_POPULATE_WRITE (before Linux 5.14) refuses it, and the pages fault
// in as they are first touched.
char* next_region(page_source& s) {
  if (block_left < region_bytes) {
    block_next = reserve_block(s);
    block_left = block_bytes;
  }
  mapped_bytes.fetch_add(region_bytes, std::memory_order_relaxed);
  block_left -= region_bytes;
  char* region = std::exchange(block_next, block_next + region_bytes);
  (void)::madvise(region, region_bytes, MADV_POPULATE_WRITE);
  return region;
}

char* map_populated(std::size_t bytes) {
  void* m = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (m == MAP_FAILED)
    throw std::bad_alloc();
  mapped_bytes.fetch_add(bytes, std::memory_order_relaxed);
  return static_cast<char*>(m);
}

} // namespace

struct pool_owner {
  // Blocks of this owner's slabs freed on other threads, per class: chains
  // pushed by their senders, taken whole by the owner when its list is empty.
  std::atomic<pool_block*> returned[pool_classes];
  pool_owner* next_free = nullptr; // in owner_records' free list
};

namespace {

// Records of threads that exited, for the next thread that carves. Never
// freed: a block of a slab carved by an exited thread may be sent home at any
// time after, and finds its record.
struct owner_records {
  spin_lock mutex;
  pool_owner* free = nullptr;
};

owner_records& the_owner_records() {
  static owner_records* r = new owner_records;
  return *r;
}

pool_owner* adopt_owner() {
  auto& r = the_owner_records();
  {
    std::lock_guard lock(r.mutex);
    if (r.free != nullptr)
      return std::exchange(r.free, r.free->next_free);
  }
  return new pool_owner{};
}

// Blocks freed on this thread that another thread's slabs hold, gathered per
// class for one home at a time and sent in one CAS.
struct away_lists {
  pool_block* head[pool_classes];
  pool_block* last[pool_classes];
  pool_owner* home[pool_classes];
  std::size_t count[pool_classes];
};

constinit thread_local away_lists this_thread_away{};

void send_away_list(away_lists& a, std::size_t c) noexcept {
  auto& returned = a.home[c]->returned[c];
  pool_block* old = returned.load(std::memory_order_relaxed);
  do
    a.last[c]->next = old;
  while (!returned.compare_exchange_weak(old, a.head[c], std::memory_order_release, std::memory_order_relaxed));
  a.head[c] = nullptr;
  a.count[c] = 0;
}

std::size_t chain_length(const pool_block* b) noexcept {
  std::size_t n = 0;
  for (; b != nullptr; b = b->next)
    ++n;
  return n;
}

depot& the_depot() {
  // Never destroyed: threads (and their pools) may outlive static destruction.
  static depot* d = new depot;
  return *d;
}

// A list of `count` blocks of class c into the depot; false when the
// depot's vector could not grow.
[[nodiscard]] bool to_depot(std::size_t c, pool_block* head, std::size_t count) noexcept {
  auto& d = the_depot();
  try {
    std::lock_guard lock(d.classes[c].mutex);
    d.classes[c].batches.push_back({head, count});
    return true;
  } catch (...) {
    return false;
  }
}

// Hands a thread's blocks back to the depot when the thread exits.
struct pool_flusher {
  ~pool_flusher();
};

} // namespace

constinit thread_local thread_pool this_thread_pool{};

void* take_pages(std::size_t bytes) {
  bytes = whole_pages(bytes);
#ifdef OTP_POOL_BYPASS
  return ::operator new(bytes, std::align_val_t{page_bytes});
#endif
  auto& s = the_page_source();
  {
    std::lock_guard lock(s.mutex);
    for (auto& list : s.returned_lists) {
      if (list.bytes == bytes && list.head != nullptr)
        return std::exchange(list.head, list.head->next);
    }
    if (bytes <= s.spare.bytes)
      return s.spare.cut(bytes);
    if (bytes <= s.tail.bytes)
      return s.tail.cut(bytes);
  }
  if (bytes >= region_bytes)
    return map_populated(bytes);
  char* region = next_region(s);
  page_span rest{region + bytes, region_bytes - bytes};
  std::lock_guard lock(s.mutex);
  // Keep the two largest of the three rests; the smallest stays unused.
  if (rest.bytes > s.tail.bytes)
    std::swap(rest, s.tail);
  if (rest.bytes > s.spare.bytes)
    std::swap(rest, s.spare);
  return region;
}

void* take_slab() {
  auto& s = the_page_source();
  {
    std::lock_guard lock(s.mutex);
    if (s.slabs.bytes == 0 && s.spare_regions != nullptr)
      s.slabs = page_span{reinterpret_cast<char*>(std::exchange(s.spare_regions, s.spare_regions->next)),
                          region_bytes};
    if (s.slabs.bytes != 0)
      return s.slabs.cut(slab_bytes);
  }
  char* region = next_region(s);
  std::lock_guard lock(s.mutex);
  if (s.slabs.bytes == 0) {
    s.slabs = page_span{region + slab_bytes, region_bytes - slab_bytes};
    return region;
  }
  // Another thread's region came first: this one waits for the next.
  s.spare_regions = ::new (region) spare_region{s.spare_regions};
  return s.slabs.cut(slab_bytes);
}

std::size_t pages_mapped() noexcept {
  return mapped_bytes.load(std::memory_order_relaxed);
}

void give_pages(void* pages, std::size_t bytes) noexcept {
  bytes = whole_pages(bytes);
#ifdef OTP_POOL_BYPASS
  ::operator delete(pages, std::align_val_t{page_bytes});
  return;
#endif
  auto& s = the_page_source();
  std::lock_guard lock(s.mutex);
  auto* g = ::new (pages) given_pages{nullptr};
  for (auto& list : s.returned_lists) {
    if (list.bytes == bytes) {
      g->next = list.head;
      list.head = g;
      return;
    }
  }
  try {
    s.returned_lists.push_back({bytes, g});
  } catch (...) {
    // No room for another size's list: these pages stay unused.
  }
}

void pool_refill(thread_pool& p, std::size_t c) {
  thread_local pool_flusher flusher; // registered once per thread, here off the fast path
  (void)flusher;
  if (p.owner == nullptr)
    p.owner = adopt_owner();
  // What came home first: its lines were this thread's last.
  if (auto& returned = p.owner->returned[c]; returned.load(std::memory_order_relaxed) != nullptr) {
    pool_block* head = returned.exchange(nullptr, std::memory_order_acquire);
    p.free[c] = head;
    p.count[c] = chain_length(head);
    return;
  }
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
  // Carve a fresh slab into blocks of this class, from the class's colour
  // on: slabs start on a page, and the first blocks of every class (a
  // process's frame, its messages) and the first control blocks all sat at
  // one offset in their pages. A load from one then waited on a store to
  // another (the core matches the low 12 bits of the addresses first):
  // ping_pong_ns 40-44 -> 48-75 ns with the same instructions; 40-45 with
  // the colours.
  const std::size_t size = (c + 1) * pool_granularity;
  const std::size_t colour = (1 + c * 7 % 15) * 64; // 64-960, none at 0
  auto* start = static_cast<char*>(take_slab());
  ::new (start) slab_header{p.owner};
  auto* slab = start + colour;
  pool_block* head = nullptr;
  std::size_t n = (slab_bytes - colour) / size;
  for (std::size_t i = n; i > 0; --i) {
    auto* b = reinterpret_cast<pool_block*>(slab + (i - 1) * size);
    b->next = head;
    head = b;
  }
  p.free[c] = head;
  p.count[c] = n;
}

void pool_send_home(pool_block* b, std::size_t c, pool_owner* home) noexcept {
  auto& a = this_thread_away;
  if (a.head[c] != nullptr && a.home[c] != home)
    send_away_list(a, c);
  if (a.head[c] == nullptr) {
    thread_local pool_flusher flusher; // sends what waits here when the thread exits
    (void)flusher;
    a.last[c] = b;
    a.home[c] = home;
  }
  b->next = a.head[c];
  a.head[c] = b;
  if (++a.count[c] == pool_batch)
    send_away_list(a, c);
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
  if (!to_depot(c, first, pool_batch)) {
    // Could not grow the depot's vector: keep the blocks here instead.
    last->next = p.free[c];
    p.free[c] = first;
    p.count[c] += pool_batch;
  }
}

pool_flusher::~pool_flusher() {
  // What waits to go home goes; the thread's own blocks, and those that came
  // home to it, go to the depot, where other threads find them; its record
  // waits for the next thread that carves.
  auto& a = this_thread_away;
  for (std::size_t c = 0; c < pool_classes; ++c) {
    if (a.head[c] != nullptr)
      send_away_list(a, c);
  }
  // Out of memory here (no room in the depot's vector), blocks stay in
  // their slabs, unused.
  auto& p = this_thread_pool;
  for (std::size_t c = 0; c < pool_classes; ++c) {
    if (p.free[c] != nullptr)
      (void)to_depot(c, p.free[c], p.count[c]);
    p.free[c] = nullptr;
    p.count[c] = 0;
  }
  if (p.owner != nullptr) {
    for (std::size_t c = 0; c < pool_classes; ++c) {
      if (pool_block* home = p.owner->returned[c].exchange(nullptr, std::memory_order_acquire))
        (void)to_depot(c, home, chain_length(home));
    }
    auto& r = the_owner_records();
    std::lock_guard lock(r.mutex);
    p.owner->next_free = r.free;
    r.free = std::exchange(p.owner, nullptr);
  }
}

} // namespace otp::detail
