// SPDX-License-Identifier: Apache-2.0
// otp/signals.cpp - signals: where a link exit, a kill, a DOWN, a link or a
// monitor takes effect, and what a process tells others when it exits.
//
// In this file, in order:
// - sending: send_signal, add_exit_hook;
// - the public link, unlink, monitor, demonitor, exit, trap_exit, with
//   their shortcut for a local target that has no signal queued;
// - arrival: scheduler::process_signals takes a process's queued items in
//   order and scheduler::handle_signal carries each signal out (an exit
//   signal kills, is trapped into an exit_msg or ignored; a DOWN becomes a
//   down_msg or answers a call; link/unlink/monitor/demonitor update the
//   tables; info is answered; a hook is kept);
// - exiting: scheduler::exit_process ends a process (destroy_frame: how a
//   kill runs destructors) and tells its links
//   (exit signals) and monitors (DOWN), scheduler::teardown ends one at
//   node shutdown and tells nobody;
// - targets that are gone: bounce answers what reaches a dead process (a
//   link or monitor gets noproc), discard_all drops items at shutdown.
#include "otp/detail/runtime.hpp"
#include "otp/node.hpp"
#include "otp/process.hpp"
#include "otp/receive.hpp"
#include "otp/scheduler.hpp"

#include <memory>
#include <utility>
#include <vector>

namespace otp {

using detail::item;
using detail::item_kind;
using detail::message;
using detail::proc_state;
using detail::process;

// ---------------------------------------------------------------- sending

namespace detail {

bool send_signal(item_kind k, const pid& from, const pid& to, const exit_reason& why, monitor_ref ref,
                 bool via_link) noexcept {
  signal* s = nullptr;
  try {
    s = make_signal(k, from);
  } catch (...) {
    return false; // out of memory: treated as a lost signal
  }
  s->reason = why;
  s->ref = ref;
  s->flag = via_link;
  return push_item(to, s);
}

bool add_exit_hook(const pid& p, exit_hook h) noexcept {
  signal* s = nullptr;
  try {
    s = make_signal(item_kind::hook, pid{});
  } catch (...) {
    return false;
  }
  s->hook = h;
  return push_item(p, s);
}

} // namespace detail

// ------------------------------------------------------------- public API

void link(const pid& to) {
  process& me = detail::require_process("otp::link");
  const pid mine = me.self();
  if (!to || to == mine)
    return;
  auto& links = me.ext().links;
  if (std::uint64_t* state = links.find(to)) {
    if (*state == 0)
      return; // already linked
    *state = 0; // our unlink is in flight: `to` removes the link, then sees this one
  } else {
    links.insert(to, 0);
  }
  // If `to` is gone: as if it had died linked to us with `noproc` (erlang:link/1).
  if (!detail::send_signal(item_kind::link, mine, to))
    detail::send_signal(item_kind::exit, to, mine, exit_reason::noproc(), {}, true);
}

void unlink(const pid& to) {
  process& me = detail::require_process("otp::unlink");
  std::uint64_t* state = me.extras != nullptr ? me.extras->links.find(to) : nullptr;
  if (state == nullptr || *state != 0)
    return;
  // Inactive at once (exit signals through it are dropped from now on), and
  // removed when `to` acknowledges: a link from `to` that crosses this
  // unlink is then ignored, as `to` drops it too.
  const std::uint64_t id = detail::make_ref(me.home()->owner());
  *state = id;
  if (!detail::send_signal(item_kind::unlink, me.self(), to, {}, monitor_ref{id}))
    me.extras->links.erase(to);
}

namespace {

// `to`'s control block if it lives on this thread, is alive and has no
// signal queued: a signal to it may then be carried out directly, since it
// would be the next thing it handles.
process* live_local_without_signals(const pid& to) noexcept {
  process* t = to.control_block();
  if (t == nullptr || !detail::is_local(t, to) || t->id.load(std::memory_order_relaxed) != to.id()
      || t->state >= proc_state::exiting || !t->signals.empty())
    return nullptr;
  return t;
}

} // namespace

monitor_ref monitor(const pid& target) {
  process& me = detail::require_process("otp::monitor");
  const monitor_ref ref{detail::make_ref(me.home()->owner())};
  me.ext().monitors.insert(ref, target);
  if (process* t = live_local_without_signals(target)) {
    // Same thread, nothing of ours queued before it: the signal would be
    // handled next anyway, so record it at once (every call does this).
    t->ext().monitored_by.insert(ref, me.self());
    return ref;
  }
  // If `target` is gone: a DOWN with `noproc`, at once.
  if (!detail::send_signal(item_kind::monitor, me.self(), target, {}, ref))
    detail::send_signal(item_kind::down, target, me.self(), exit_reason::noproc(), ref);
  return ref;
}

bool demonitor(monitor_ref ref, bool flush) {
  process& me = detail::require_process("otp::demonitor");
  bool active = false;
  if (me.extras != nullptr) {
    if (const pid* found = me.extras->monitors.find(ref)) {
      const pid target = *found;
      me.extras->monitors.erase(ref);
      if (process* t = live_local_without_signals(target); t != nullptr && t->extras != nullptr)
        t->extras->monitored_by.erase(ref);
      else
        detail::send_signal(item_kind::demonitor, me.self(), target, {}, ref);
      active = true;
    }
  }
  if (flush) {
    item* prev = nullptr;
    for (item* it = me.mailbox.head(); it != nullptr;) {
      item* next = it->next;
      auto* m = static_cast<detail::message*>(it);
      if (m->type == detail::tag_of<down_msg>() && detail::payload<down_msg>(m).ref == ref) {
        me.mailbox.unlink(prev, it);
        detail::destroy_item(it);
      } else {
        prev = it;
      }
      it = next;
    }
  }
  return active;
}

void exit(const pid& to, const exit_reason& why) {
  process* me = detail::current_process();
  const pid from = me != nullptr ? me->self() : pid{};
  detail::send_signal(item_kind::exit, from, to, why);
  // A signal to oneself takes effect at once (Erlang handles it before
  // exit/2 returns): nothing after the call runs. The queued signal still
  // ends the process at its next suspension if the exception is caught.
  if (me != nullptr && to == from && (why.is_kill() || !me->trap_exit))
    throw exit_exception(why.is_kill() ? exit_reason::killed() : why);
}

void exit(exit_reason why) { throw exit_exception(std::move(why)); }

bool trap_exit(bool on) {
  process& me = detail::require_process("otp::trap_exit");
  const bool was = me.trap_exit;
  me.trap_exit = on;
  return was;
}

// ---------------------------------------------------------------- arrival

bool scheduler::process_signals(process* p) noexcept {
  item* fifo = detail::take_fifo(p->inbox);
  const pid me = p->self();
  auto handle_list = [&](item* it) {
    while (it != nullptr) {
      item* next = it->next;
      if (p->state >= proc_state::exiting) {
        detail::bounce(me, it);
      } else if (it->kind == item_kind::message) {
        p->mailbox.push_back(it);
      } else if (it->kind == item_kind::reply) {
        (void)p->offer_reply(it);
      } else {
        handle_signal(p, static_cast<detail::signal*>(it));
      }
      it = next;
    }
  };
  // What was queued here first: a sender that was local and then remote
  // (either of them moved) has its older items in `signals`. A sender that
  // was remote and then local had its inbox items moved to `signals` before
  // its first local one (local_push).
  handle_list(p->signals.take_all());
  handle_list(fifo);
  return p->state < proc_state::exiting;
}

bool scheduler::handle_signal(process* p, detail::signal* s) noexcept {
  struct destroy_on_exit {
    detail::signal* s;
    ~destroy_on_exit() { detail::destroy_item(s); }
  } guard{s};
  switch (s->kind) {
    case item_kind::exit: {
      if (s->flag) {
        // A link exit signal counts only while the link is active.
        const std::uint64_t* state = p->extras != nullptr ? p->extras->links.find(s->from) : nullptr;
        if (state == nullptr || *state != 0)
          return true;
        p->extras->links.erase(s->from);
      }
      if (s->reason.is_kill() && !s->flag) {
        exit_process(p, exit_reason::killed()); // untrappable
        return false;
      }
      if (p->trap_exit) {
        p->mailbox.push_back(detail::make_message<exit_msg>(exit_msg{s->from, s->reason}));
        return true;
      }
      if (s->reason.is_normal() && s->from != p->self())
        return true;
      exit_process(p, s->reason);
      return false;
    }
    case item_kind::link:
      // Ignored while our own unlink is in flight: `from` linked before it
      // saw that unlink, and removes its side when it does.
      (void)p->ext().links.insert(s->from, 0);
      return true;
    case item_kind::unlink:
      if (p->extras != nullptr)
        p->extras->links.erase(s->from);
      detail::send_signal(item_kind::unlink_ack, p->self(), s->from, {}, s->ref);
      return true;
    case item_kind::unlink_ack:
      if (p->extras != nullptr) {
        if (const std::uint64_t* state = p->extras->links.find(s->from); state != nullptr && *state == s->ref.value())
          p->extras->links.erase(s->from);
      }
      return true;
    case item_kind::monitor: p->ext().monitored_by.insert(s->ref, s->from); return true;
    case item_kind::demonitor:
      if (p->extras != nullptr)
        p->extras->monitored_by.erase(s->ref);
      return true;
    case item_kind::down:
      // Dropped if the monitor was removed meanwhile (demonitor).
      if (p->extras != nullptr && p->extras->monitors.erase(s->ref) != 0) {
        message** slot = p->extras->calls.find(s->ref.value());
        if (slot == nullptr)
          p->mailbox.push_back(detail::make_message<down_msg>(down_msg{s->ref, s->from, s->reason}));
        else if (*slot == nullptr) // the callee exited before it replied
          *slot = detail::make_message<down_msg>(down_msg{s->ref, s->from, s->reason});
      }
      return true;
    case item_kind::info:
      otp::send(s->from, detail::info_reply{s->ref.value(), detail::snapshot(*p)});
      return true;
    case item_kind::hook:
      try {
        p->ext().exit_hooks.push_back(s->hook);
      } catch (...) {
        s->hook(p->self()); // cannot keep it: run it as if p had exited
      }
      return true;
    case item_kind::message:
    case item_kind::reply: break;
  }
  return true;
}

// ---------------------------------------------------------------- exiting

void scheduler::destroy_frame(process* p) noexcept {
  if (!p->top)
    return;
  // Destroying the outermost frame destroys every frame it awaits, and with
  // them the process's locals: this is how kill runs destructors.
  process* prev = std::exchange(detail::this_thread.current, p);
  p->top.destroy();
  detail::this_thread.current = prev;
  p->top = {};
  p->resume = {};
}

namespace {
// What arrived for calls the process no longer waits for.
void free_call_slots(detail::process_extras& x) noexcept {
  x.calls.for_each([](std::uint64_t, message* m) {
    if (m != nullptr)
      m->destroy();
  });
}
} // namespace

void scheduler::exit_process(process* p, const exit_reason& why) noexcept {
  p->state = proc_state::exiting;
  std::vector<std::shared_ptr<std::promise<exit_reason>>> watchers;
  const pid me = p->self();
  destroy_frame(p);
  p->waiter = nullptr;
  if (auto* x = std::exchange(p->extras, nullptr)) {
    // First, so that what a hook releases (a registered name) is free
    // before anyone hears of the exit.
    for (auto& h : x->exit_hooks)
      h(me);
    x->links.for_each([&](const pid& l, std::uint64_t unlinking) {
      if (unlinking == 0)
        detail::send_signal(item_kind::exit, me, l, why, {}, true);
    });
    x->monitored_by.for_each(
      [&](const monitor_ref& ref, const pid& watcher) { detail::send_signal(item_kind::down, me, watcher, why, ref); });
    x->monitors.for_each(
      [&](const monitor_ref& ref, const pid& target) { detail::send_signal(item_kind::demonitor, me, target, {}, ref); });
    watchers = std::move(x->exit_watchers);
    cancel_send_timers(*x);
    free_call_slots(*x);
    delete x;
  }
  for (item* it = p->mailbox.take_all(); it != nullptr;) {
    item* next = it->next;
    detail::destroy_item(it);
    it = next;
  }
  // What other threads pushed before now is answered at once (a link gets
  // its noproc exit); what they push until the block closes, when reaped.
  for (item* list : {p->signals.take_all(), detail::take_fifo(p->inbox)}) {
    for (item* it = list; it != nullptr;) {
      item* next = it->next;
      detail::bounce(me, it);
      it = next;
    }
  }
  p->state = proc_state::dead;
  // From here remote senders are refused; those already holding the block
  // finish their push, and the zombie is recycled once none remains.
  p->refs.fetch_or(process::closed_bit, std::memory_order_acq_rel);
  remove_live(p);
  zombies_.push_back(p);
  // Last, so a thread woken by the future sees the process fully gone.
  for (auto& w : watchers)
    w->set_value(why);
}

void scheduler::teardown(process* p) noexcept {
  // Node shutdown: the frame is destroyed (destructors run), nobody is told.
  p->state = proc_state::exiting;
  const pid me = p->self();
  destroy_frame(p);
  p->waiter = nullptr;
  if (auto* x = std::exchange(p->extras, nullptr)) {
    cancel_send_timers(*x);
    free_call_slots(*x);
    for (auto& w : x->exit_watchers)
      w->set_value(exit_reason::killed());
    for (auto& h : x->exit_hooks)
      h(me);
    delete x;
  }
  detail::discard_all(me, p->mailbox.take_all());
  detail::discard_all(me, p->signals.take_all());
  p->state = proc_state::dead;
  p->refs.fetch_or(process::closed_bit, std::memory_order_acq_rel);
  remove_live(p);
  zombies_.push_back(p);
}

// ------------------------------------------------------ targets that are gone

namespace detail {

void bounce(const pid& dead, item* it) noexcept {
  if (!is_message(it->kind)) {
    auto* s = static_cast<signal*>(it);
    switch (s->kind) {
      case item_kind::link:
        send_signal(item_kind::exit, dead, s->from, exit_reason::noproc(), {}, true);
        break;
      case item_kind::monitor:
        send_signal(item_kind::down, dead, s->from, exit_reason::noproc(), s->ref);
        break;
      case item_kind::info:
        try {
          otp::send(s->from, info_reply{s->ref.value(), std::nullopt});
        } catch (...) {
        }
        break;
      case item_kind::hook: s->hook(dead); break;
      case item_kind::unlink:
        send_signal(item_kind::unlink_ack, dead, s->from, {}, s->ref);
        break;
      case item_kind::message:
      case item_kind::reply:
      case item_kind::exit:
      case item_kind::unlink_ack:
      case item_kind::demonitor:
      case item_kind::down: break;
    }
  }
  destroy_item(it);
}

void discard_all(const pid& dead, item* list) noexcept {
  while (list != nullptr) {
    item* next = list->next;
    if (list->kind == item_kind::hook)
      static_cast<signal*>(list)->hook(dead);
    destroy_item(list);
    list = next;
  }
}

} // namespace detail

} // namespace otp
