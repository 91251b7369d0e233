// SPDX-License-Identifier: Apache-2.0
// otp/process.hpp - what a process can do: spawn, send, link, monitor, exit, timers.
#pragma once

#include "otp/detail/item.hpp"
#include "otp/detail/process.hpp"
#include "otp/node.hpp"
#include "otp/scheduler.hpp"
#include "otp/task.hpp"

#include <chrono>
#include <coroutine>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

namespace otp {

namespace detail {
void deliver(const pid& to, item* it) noexcept;
[[nodiscard]] node& calling_node(const char* what);
timer_ref start_send_timer(std::chrono::steady_clock::duration d, const pid& to, message* m);
} // namespace detail

/// Returns the calling process's pid (erlang:self/0).
[[nodiscard]] pid self();

/// Returns whether the calling thread is running a process.
[[nodiscard]] inline bool in_process() noexcept { return detail::current_process() != nullptr; }

/// Returns the scheduler the calling process runs on; its executor serves
/// the process's Asio objects (sockets, timers). Asking binds the process
/// to it for life (its objects complete on that thread); see otp::follow.
[[nodiscard]] scheduler& this_scheduler();

/// Returns the node of the calling process (its statistics, its schedulers);
/// unlike this_scheduler(), asking does not bind the process.
[[nodiscard]] inline node& this_node() { return detail::calling_node("this_node"); }

namespace detail {
// The type a message is stored and matched as: std::decay_t<T>, except that
// a string literal (a char array) is sent as std::string, so that
// `send(p, "hi")` is received by `receive<std::string>()`.
template <class T>
using message_type_t =
  std::conditional_t<std::is_array_v<std::remove_reference_t<T>>
                       && std::is_same_v<std::remove_cv_t<std::remove_extent_t<std::remove_reference_t<T>>>, char>,
                     std::string, std::decay_t<T>>;
} // namespace detail

/// Sends `value` to `to` (Erlang's `!`). Never blocks and never fails: a
/// message to a dead process is dropped. Order is kept per sender.
/// The message is matched by its type, std::decay_t<T> (a string literal is
/// sent as std::string). Safe from any thread.
template <class T>
void send(const pid& to, T&& value) {
  detail::deliver(to, detail::make_message<detail::message_type_t<T>>(std::forward<T>(value)));
}

/// Spawns `f(args...)` on the calling process's scheduler.
template <class F, class... Args>
pid spawn(F&& f, Args&&... args) {
  return detail::calling_node("spawn").spawn_opt({}, std::forward<F>(f), std::forward<Args>(args)...).pid;
}

/// Spawns `f(args...)` linked to the calling process, atomically.
template <class F, class... Args>
pid spawn_link(F&& f, Args&&... args) {
  return detail::calling_node("spawn_link")
    .spawn_opt({.link = true}, std::forward<F>(f), std::forward<Args>(args)...)
    .pid;
}

/// Spawns `f(args...)` monitored by the calling process, atomically.
template <class F, class... Args>
std::pair<pid, monitor_ref> spawn_monitor(F&& f, Args&&... args) {
  auto r = detail::calling_node("spawn_monitor")
             .spawn_opt({.monitor = true}, std::forward<F>(f), std::forward<Args>(args)...);
  return {r.pid, r.monitor};
}

/// Spawns with options: a chosen scheduler, link, monitor (erlang:spawn_opt).
template <class F, class... Args>
spawn_result spawn_opt(const spawn_options& o, F&& f, Args&&... args) {
  return detail::calling_node("spawn_opt").spawn_opt(o, std::forward<F>(f), std::forward<Args>(args)...);
}

/// Links the calling process to `to` (erlang:link/1). Linking to self or
/// to an existing link does nothing; if `to` does not exist, the caller
/// receives an exit signal `noproc` (a message if it traps exits).
void link(const pid& to);

/// Removes the link to `to`, both ways (erlang:unlink/1). Unlinking a
/// process that is not linked does nothing. Exit signals from `to` that
/// were already in flight through the link are dropped.
void unlink(const pid& to);

/// Monitors `target` (erlang:monitor(process, Target)). When it exits, the
/// caller receives a down_msg; if it is already gone, at once, with `noproc`.
/// Monitors stack: each call makes an independent one.
monitor_ref monitor(const pid& target);

/// Removes a monitor (erlang:demonitor/2). Afterwards no down_msg for it
/// will arrive; with `flush`, one already in the mailbox is removed too.
/// Returns whether the monitor was still active.
bool demonitor(monitor_ref ref, bool flush = false);

/// Sends an exit signal to `to` (erlang:exit/2). Safe from any thread.
/// `kill` cannot be trapped; `normal` is ignored by a process that does not
/// trap exits, unless it is sent to itself. A signal to the calling process
/// itself that ends it (any `kill`, or any reason when it does not trap
/// exits) takes effect at once: exit throws otp::exit_exception, as in
/// Erlang nothing after the call runs.
void exit(const pid& to, const exit_reason& why);

/// Ends the calling process with `why` (erlang:exit/1) by throwing exit_exception.
[[noreturn]] void exit(exit_reason why);

/// Sets whether the calling process traps exit signals (process_flag(trap_exit)).
/// Returns the previous value.
bool trap_exit(bool on);

/// Sends `value` to `to` after `d`, from the calling process's scheduler
/// (erlang:send_after/3). A timer aimed at a process of the same scheduler
/// is cancelled when that process exits.
template <class T>
timer_ref send_after(std::chrono::steady_clock::duration d, const pid& to, T&& value) {
  return detail::start_send_timer(d, to, detail::make_message<detail::message_type_t<T>>(std::forward<T>(value)));
}

/// Cancels a send_after timer (erlang:cancel_timer/1). Returns true if it
/// was pending. Called off the timer's scheduler, the cancel is carried out
/// asynchronously (Erlang's `{async, true}`) and the result is false.
bool cancel_timer(timer_ref ref);

namespace detail {

// Suspends the caller and queues it behind the ready processes. `stay`:
// not a point where load is shed (a server letting its clients run).
struct yield_awaiter {
  bool stay = false;
  [[nodiscard]] bool await_ready() const noexcept { return false; }
  std::coroutine_handle<> await_suspend(std::coroutine_handle<> h) const noexcept;
  void await_resume() const noexcept {}
};

} // namespace detail

/// Lets the other ready processes of this scheduler run (erlang:yield/0).
/// A process that computes for long without suspending blocks its scheduler
/// and cannot be killed until it suspends: yield in long loops. A process
/// that yields may be moved to an idle scheduler before it resumes.
[[nodiscard]] inline detail::yield_awaiter yield() noexcept { return {}; }

/// Returns a snapshot of `p`, or nothing if it is not alive (erlang:process_info/1).
/// From a process of another scheduler the snapshot is taken on `p`'s scheduler.
[[nodiscard]] task<std::optional<process_info>> get_process_info(pid p);

} // namespace otp
