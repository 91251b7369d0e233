// SPDX-License-Identifier: Apache-2.0
// otp/process.cpp - the calling process and its thread (this_thread, self,
// this_scheduler, yield, a crash's record), and process_info (snapshot,
// get_process_info). Elsewhere: sends in delivery.cpp, signals (link,
// monitor, exit) in signals.cpp, spawn in spawn.cpp, receive in
// receive.cpp with calls, send_after in timers.cpp, Asio in asio.cpp.
#include "otp/process.hpp"

#include "otp/detail/runtime.hpp"
#include "otp/receive.hpp"

#include <string>
#include <system_error>

namespace otp {

using detail::item;
using detail::item_kind;
using detail::proc_state;
using detail::process;

namespace detail {

constinit thread_local thread_state this_thread{};

void throw_not_in_process(const char* what) {
  throw std::system_error(make_error_code(errc::not_in_process),
                          std::string(what) + " must be called from a process");
}

node& calling_node(const char* what) {
  if (auto* s = this_thread.sched)
    return s->owner();
  throw std::system_error(make_error_code(errc::not_in_process),
                          std::string("otp::") + what
                            + " must be called from a process; use node::spawn from other threads");
}

void record_crash(std::exception_ptr e) noexcept {
  if (auto* p = this_thread.current) {
    try {
      p->ext().crash = std::move(e);
    } catch (...) {
      // Out of memory: the process still ends, as an unknown crash.
    }
  }
}

otp::process_info snapshot(const process& p) {
  otp::process_info i;
  i.pid = p.self();
  switch (p.state) {
    case proc_state::created:
    case proc_state::runnable: i.status = otp::process_info::status_t::runnable; break;
    case proc_state::running: i.status = otp::process_info::status_t::running; break;
    case proc_state::waiting: i.status = otp::process_info::status_t::waiting; break;
    case proc_state::suspended: i.status = otp::process_info::status_t::suspended; break;
    case proc_state::exiting:
    case proc_state::dead: i.status = otp::process_info::status_t::exiting; break;
  }
  i.message_queue_len = p.mailbox.size();
  for (const item* it = p.signals.head; it != nullptr; it = it->next)
    i.message_queue_len += it->kind == item_kind::message ? 1 : 0;
  if (p.extras != nullptr) {
    p.extras->links.for_each([&](const pid& l, std::uint64_t unlinking) {
      if (unlinking == 0)
        i.links.push_back(l);
    });
    p.extras->monitors.for_each([&](const monitor_ref& r, const pid&) { i.monitors.push_back(r); });
    p.extras->monitored_by.for_each([&](const monitor_ref&, const pid& w) { i.monitored_by.push_back(w); });
  }
  i.scheduler = p.home()->index();
  i.trap_exit = p.trap_exit;
  return i;
}

std::coroutine_handle<> yield_awaiter::await_suspend(std::coroutine_handle<> h) const noexcept {
  process& p = *this_thread.current;
  p.resume = h;
  p.state = proc_state::runnable;
  scheduler* s = p.home();
  if (stay)
    s->note_busy_server(p);
  s->make_ready(&p, stay);
  return s->handoff();
}

} // namespace detail

// -------------------------------------------------------------- public API

pid self() { return detail::require_process("otp::self").self(); }

scheduler& this_scheduler() {
  if (auto* s = detail::this_thread.sched) {
    // Asio objects made on its io_context complete on this thread: a
    // process that asks for its scheduler stays on it.
    if (auto* p = detail::this_thread.current; p != nullptr && (!p->bound || !p->io_bound))
      s->bind_for_io(*p);
    return *s;
  }
  throw std::system_error(make_error_code(errc::not_in_process),
                          "otp::this_scheduler must be called from a process");
}

namespace {
struct info_tag_is {
  std::uint64_t tag;
  bool operator()(const detail::info_reply& r) const noexcept { return r.tag == tag; }
};
} // namespace

task<std::optional<process_info>> get_process_info(pid p) {
  process& me = detail::require_process("otp::get_process_info");
  process* target = p.control_block();
  if (target == nullptr)
    co_return std::nullopt;
  if (detail::is_local(target, p)) {
    if (target->id.load(std::memory_order_relaxed) != p.id() || target->state >= proc_state::exiting)
      co_return std::nullopt;
    co_return detail::snapshot(*target);
  }
  const std::uint64_t tag = detail::make_ref(me.home()->owner());
  if (!detail::send_signal(item_kind::info, me.self(), p, {}, monitor_ref{tag}))
    co_return std::nullopt;
  auto reply = receive<detail::info_reply>(info_tag_is{tag});
  detail::info_reply r = co_await reply;
  co_return std::move(r.info);
}

} // namespace otp
