// SPDX-License-Identifier: Apache-2.0
// otp/detail/runtime.hpp - delivery primitives shared by the runtime's sources.
#pragma once

#include "otp/detail/item.hpp"
#include "otp/detail/process.hpp"
#include "otp/node.hpp"
#include "otp/scheduler.hpp"

#include <cstdint>

namespace otp::detail {

// A node-unique reference (monitors, timers, request tags).
[[nodiscard]] inline std::uint64_t make_ref(node& n) noexcept {
  if (auto* s = this_thread.sched; s != nullptr && &s->owner() == &n)
    return (std::uint64_t{s->index() + 1} << 56) | s->next_local_ref();
  return n.next_foreign_ref();
}

// True when `to` lives on the calling thread's scheduler: its control block
// may then be touched directly, without atomics.
[[nodiscard]] inline bool is_local(const process* p, const pid&) noexcept {
  // Only the owner thread reads itself in `home_` (acquire: it then sees
  // what the previous owner wrote before handing the process over).
  const scheduler* s = this_thread.sched;
  return s != nullptr && p->home() == s;
}

// Pushes an item to `to`; false (and the item destroyed) if it is gone.
bool push_item(const pid& to, item* it) noexcept;

// Appends to a local, live process's queues and wakes it as needed.
void local_push(process& p, item* it) noexcept;

// Sends an exit/link/down/... signal; false if the target is gone.
bool send_signal(item_kind k, const pid& from, const pid& to, const exit_reason& why = {},
                 monitor_ref ref = {}, bool via_link = false) noexcept;

// Disposes of an item that reached a process that is gone: a link or a
// monitor request is answered with `noproc`, an info request with nothing.
void bounce(const pid& dead, item* it) noexcept;

// Installs `h` on `p`: it runs once, on p's thread, when p exits (before
// p's links and monitors are told), or on whatever thread finds p gone if p
// exits first. Returns false, without running `h`, if p is already gone.
bool add_exit_hook(const pid& p, exit_hook h) noexcept;

// Disposes of every item of a list at node shutdown, when nobody is told
// anything: an exit hook in it still runs (a hook runs exactly once).
void discard_all(const pid& dead, item* list) noexcept;


// The reply to an info signal.
struct info_reply {
  std::uint64_t tag;
  std::optional<otp::process_info> info;
};

[[nodiscard]] otp::process_info snapshot(const process& p);

} // namespace otp::detail
