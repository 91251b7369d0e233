// SPDX-License-Identifier: Apache-2.0
#include "otp/process.hpp"

#include "otp/asio.hpp"
#include "otp/call.hpp"
#include "otp/detail/runtime.hpp"
#include "otp/receive.hpp"

#include <asio/post.hpp>

#include <stdexcept>
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

std::uint64_t make_ref(node& n) noexcept {
  if (auto* s = this_thread.sched; s != nullptr && &s->owner() == &n)
    return (std::uint64_t{s->index() + 1} << 56) | s->next_local_ref();
  return n.next_foreign_ref();
}

bool is_local(const process* p, const pid&) noexcept {
  // Only the owner thread reads itself in `home_` (acquire: it then sees
  // what the previous owner wrote before handing the process over).
  const scheduler* s = this_thread.sched;
  return s != nullptr && p->home() == s;
}

void local_push(process& p, item* it) noexcept {
  if (p.inbox.load(std::memory_order_relaxed) != nullptr) [[unlikely]] {
    // Items from other threads wait in the inbox: ours go behind them, as
    // a sender that was remote and is now local (one of us moved) must not
    // overtake its own older items.
    for (item* q = take_fifo(p.inbox); q != nullptr;) {
      item* next = q->next;
      p.signals.push_back(q);
      q = next;
    }
  }
  if (is_message(it->kind) && p.signals.empty()) {
    if (it->kind == item_kind::message)
      p.mailbox.push_back(it);
    else if (!p.offer_reply(it))
      return;
    // Match at once: a message the waiting receive does not want costs no
    // wake-up and no scheduler round trip. The receiver's predicates run as
    // the receiver (self() names it), though on the sender's turn.
    if (p.state == proc_state::waiting && !p.in_ready && match_waiting(p)) {
      p.state = proc_state::runnable;
      p.home()->make_ready(&p, true);
    }
    return;
  }
  // Signals (and messages queued behind them, to keep per-sender order) are
  // handled by the scheduler while the process is suspended.
  p.signals.push_back(it);
  if (!p.in_ready && p.state != proc_state::running && p.state != proc_state::created)
    p.home()->make_ready(&p, true);
}

namespace {

bool remote_push(process& p, std::uint64_t id, item* it) noexcept {
  // The hold keeps the block from being recycled while we push; a closed
  // block, or one that now holds another process, refuses the item.
  const std::uint64_t prev = p.refs.fetch_add(1, std::memory_order_acquire);
  const bool open = (prev & process::closed_bit) == 0 && p.id.load(std::memory_order_relaxed) == id;
  if (open) {
    item* head = p.inbox.load(std::memory_order_relaxed);
    do {
      it->next = head;
    } while (!p.inbox.compare_exchange_weak(head, it, std::memory_order_seq_cst, std::memory_order_relaxed));
    // Only the push onto an empty inbox needs to tell the scheduler; the
    // flag keeps the block on its remote-ready stack at most once.
    if (head == nullptr && !p.notified.exchange(true, std::memory_order_seq_cst))
      p.home()->remote_enqueue(&p);
  } else {
    destroy_item(it);
  }
  p.refs.fetch_sub(1, std::memory_order_release);
  return open;
}

} // namespace

bool push_item(const pid& to, item* it) noexcept {
  process* p = to.control_block();
  if (p == nullptr) {
    destroy_item(it);
    return false;
  }
  if (is_local(p, to)) {
    if (p->id.load(std::memory_order_relaxed) != to.id() || p->state >= proc_state::exiting) {
      destroy_item(it);
      return false;
    }
    local_push(*p, it);
    return true;
  }
  return remote_push(*p, to.id(), it);
}

void deliver(const pid& to, item* it) noexcept { (void)push_item(to, it); }


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

// ------------------------------------------------------------------ spawn

// Whether a plain spawn goes straight to a hungry scheduler (else it starts
// here and moves when load is shed): docs/design.md, "Load balancing".
constexpr bool spawn_to_hungry = false;

spawn_result spawn_frame(node* n, const spawn_options& o, std::coroutine_handle<> top,
                         std::shared_ptr<std::promise<exit_reason>> watcher) {
  struct frame_guard {
    std::coroutine_handle<> h;
    ~frame_guard() {
      if (h)
        h.destroy();
    }
  } guard{top};
  process* parent = this_thread.current;
  scheduler* cur = this_thread.sched;
  if (cur != nullptr && &cur->owner() != n)
    cur = nullptr;
  if (parent != nullptr && cur == nullptr)
    parent = nullptr; // a process of another node: it cannot link across nodes
  const bool monitor = o.monitor || o.monitor_as.has_value();
  if ((o.link || monitor) && parent == nullptr)
    throw std::system_error(make_error_code(errc::not_in_process),
                            "spawn_opt: link and monitor need a calling process of this node");
  if (o.scheduler && *o.scheduler >= n->scheduler_count())
    throw std::invalid_argument("spawn_opt: scheduler " + std::to_string(*o.scheduler)
                                + " does not exist (the node has " + std::to_string(n->scheduler_count())
                                + ")");
  // From outside the node's schedulers, shutdown waits for this spawn to
  // finish, so the process is torn down with the others, never lost.
  struct foreign_spawn {
    node* n = nullptr;
    ~foreign_spawn() {
      if (n != nullptr)
        n->end_foreign_spawn();
    }
  } in_flight;
  if (cur == nullptr ? !n->begin_foreign_spawn() : n->stopping()) {
    if (watcher)
      watcher->set_value(exit_reason::noproc());
    return {};
  }
  if (cur == nullptr)
    in_flight.n = n;
  scheduler* target = o.scheduler ? &n->get_scheduler(*o.scheduler) : cur != nullptr ? cur : &n->pick_scheduler();
  if (spawn_to_hungry && !o.scheduler && cur != nullptr && n->anyone_hungry()) {
    if (scheduler* h = n->claim_hungry(*cur))
      target = h; // a burst of spawns spreads at once, not a step later
  }

  process* p = cur != nullptr ? cur->allocate_block() : n->take_block();
  const std::uint64_t id = (std::uint64_t{target->index()} << pid::serial_bits) | target->next_serial();
  p->home_.store(target, std::memory_order_relaxed);
  p->top = p->resume = std::exchange(guard.h, {});
  p->state = proc_state::created;
  // A recycled block carries the last process's flags: start afresh. (Its
  // queues, the mailbox's count with it, extras and waiter were emptied
  // when that process exited.)
  p->trap_exit = false;
  p->bound = o.scheduler.has_value();
  p->woken_here = false;
  p->in_ready = false;
  p->waiter = nullptr;
  p->id.store(id, std::memory_order_relaxed);
  const pid child = p->self();
  spawn_result r{child, {}};
  if (o.link) {
    p->ext().links.insert(parent->self(), 0);
    parent->ext().links.insert(child, 0);
  }
  if (watcher)
    p->ext().exit_watchers.push_back(std::move(watcher));
  if (monitor) {
    r.monitor = o.monitor_as ? *o.monitor_as : monitor_ref{make_ref(*n)};
    p->ext().monitored_by.insert(r.monitor, parent->self());
    parent->ext().monitors.insert(r.monitor, child);
  }
  // Open for remote senders: they read `id` and `home` only after seeing this.
  p->refs.fetch_and(~process::closed_bit, std::memory_order_release);
  if (target == cur) {
    cur->adopt(p);
  } else {
    p->notified.store(true, std::memory_order_relaxed);
    target->remote_enqueue(p);
  }
  return r;
}

// ---------------------------------------------------------------- receive

std::coroutine_handle<> receive_prepare_suspend(process& p, receive_waiter* w, std::coroutine_handle<> h,
                                                timer_node* timer,
                                                std::optional<std::chrono::steady_clock::duration> timeout) {
  p.resume = h;
  p.waiter = w;
  p.state = proc_state::waiting;
  scheduler* s = p.home();
  if (timeout && *timeout > std::chrono::steady_clock::duration::zero())
    s->add_timer_after(timer, *timeout);
  if (p.has_pending_signals())
    s->make_ready(&p);
  return s->handoff();
}

void receive_cleanup(process& p, receive_waiter* w, timer_node* timer) noexcept {
  if (p.waiter == w)
    p.waiter = nullptr;
  if (timer != nullptr)
    p.home()->cancel_timer(timer);
}

bool receive_timeout_fired(process& p, receive_waiter* w, scheduler& s) noexcept {
  if (p.state != proc_state::waiting || p.waiter != w)
    return false;
  p.waiter = nullptr;
  p.state = proc_state::runnable;
  if (!p.in_ready)
    s.make_ready(&p);
  return true;
}

void receive_matched(process& p, timer_node* timer) noexcept {
  p.waiter = nullptr;
  if (timer != nullptr)
    p.home()->cancel_timer(timer);
}

// -------------------------------------------------------------------- I/O

void io_suspend(process& p, std::coroutine_handle<> h) noexcept {
  p.resume = h;
  p.state = proc_state::suspended;
  if (p.has_pending_signals() && !p.in_ready)
    p.home()->make_ready(&p);
}

void io_complete(process& p) noexcept {
  p.state = proc_state::runnable;
  if (!p.in_ready)
    p.home()->make_ready(&p);
}

asio::io_context::executor_type process_executor(process& p) noexcept {
  p.bound = true; // its I/O completes on this io_context's thread: it stays here
  return p.home()->get_executor();
}

std::coroutine_handle<> yield_awaiter::await_suspend(std::coroutine_handle<> h) const noexcept {
  process& p = *this_thread.current;
  p.resume = h;
  p.state = proc_state::runnable;
  p.home()->make_ready(&p, stay);
  return p.home()->handoff();
}

// ------------------------------------------------------------------ timers

namespace {

void fire_send_timer(timer_node* node, scheduler& s) noexcept {
  auto* t = static_cast<send_timer*>(node);
  s.forget_send_timer(t);
  item* m = std::exchange(t->msg, nullptr);
  const pid to = t->target;
  delete t;
  deliver(to, m);
}

bool cancel_here(scheduler& s, std::uint64_t ref) noexcept {
  auto found = s.send_timers().find(ref);
  if (found == s.send_timers().end())
    return false;
  send_timer* t = found->second;
  s.forget_send_timer(t);
  destroy_item(t->msg);
  delete t;
  return true;
}

} // namespace

timer_ref start_send_timer(std::chrono::steady_clock::duration d, const pid& to, message* m) {
  scheduler* s = this_thread.sched;
  if (s == nullptr) {
    destroy_item(m);
    throw std::system_error(make_error_code(errc::not_in_process),
                            "send_after must be called from a process (or a scheduler thread)");
  }
  auto* t = new send_timer;
  t->deadline = s->deadline_after(d);
  t->fire = &fire_send_timer;
  t->target = to;
  t->msg = m;
  t->ref = make_ref(s->owner());
  process* tp = to.control_block();
  if (tp != nullptr && is_local(tp, to) && tp->id.load(std::memory_order_relaxed) == to.id()
      && tp->state < proc_state::exiting) {
    // Cancelled with its target, like Erlang's timers to a local pid.
    auto& x = tp->ext();
    t->owner = tp;
    t->next = x.timers;
    if (x.timers != nullptr)
      x.timers->prev = t;
    x.timers = t;
  }
  s->send_timers().emplace(t->ref, t);
  s->add_timer(t);
  if (process* me = this_thread.current) {
    // Keeps the starter here while the timer is pending: its cancel_timer
    // then finds the timer on its own scheduler, synchronously.
    try {
      ++me->ext().timers_started;
      t->starter = me->self();
    } catch (...) {
      // No memory for the extras: the timer still runs, unaccounted.
    }
  }
  return timer_ref{t->ref};
}

} // namespace detail

// -------------------------------------------------------------- public API

pid self() { return detail::require_process("otp::self").self(); }

scheduler& this_scheduler() {
  if (auto* s = detail::this_thread.sched) {
    // Asio objects made on its io_context complete on this thread: a
    // process that asks for its scheduler stays on it.
    if (auto* p = detail::this_thread.current)
      p->bound = true;
    return *s;
  }
  throw std::system_error(make_error_code(errc::not_in_process),
                          "otp::this_scheduler must be called from a process");
}

bool cancel_timer(timer_ref ref) {
  scheduler* s = detail::this_thread.sched;
  const auto owner = static_cast<unsigned>(ref.value() >> 56);
  if (owner == 0 || s == nullptr)
    return false;
  if (owner - 1 == s->index())
    return detail::cancel_here(*s, ref.value());
  if (owner - 1 < s->owner().scheduler_count()) {
    scheduler& other = s->owner().get_scheduler(owner - 1);
    asio::post(other.context(), [&other, v = ref.value()] { detail::cancel_here(other, v); });
  }
  return false;
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

// ------------------------------------------------------------------- calls

namespace otp::detail {

namespace {
// Closes a call's slot, dropping what arrived for it.
void drop_call_slot(process_extras& x, monitor_ref ref) noexcept {
  if (message** slot = x.calls.find(ref.value())) {
    if (*slot != nullptr)
      (*slot)->destroy(*slot);
    x.calls.erase(ref.value());
  }
}
} // namespace

call_wait::call_wait(process& p, monitor_ref ref, const pid& callee, const class timeout& t) noexcept
  : receive_waiter{&try_match_thunk}, proc_(&p), ref_(ref), callee_(callee), limit_(t.duration()), armed_(true) {
  this->fire = &fire_thunk;
}

call_wait::call_wait(error e) noexcept : receive_waiter{&try_match_thunk}, early_(std::move(e)) {}

call_wait::~call_wait() {
  if (!armed_)
    return;
  // Never awaited to the end (the process was killed while waiting, or the
  // awaiter was dropped): close the slot so nothing lands there later.
  receive_cleanup(*proc_, this, this);
  process_extras* x = proc_->extras;
  if (x == nullptr)
    return;
  drop_call_slot(*x, ref_);
  if (x->monitors.find(ref_) != nullptr && this_thread.current == proc_)
    (void)otp::demonitor(ref_);
}

message* call_wait::arrived() const noexcept {
  if (proc_->extras == nullptr)
    return nullptr;
  message* const* slot = proc_->extras->calls.find(ref_.value());
  return slot != nullptr ? *slot : nullptr;
}

bool call_wait::ready() const noexcept {
  if (early_)
    return true;
  // Pending signals (a DOWN for this call among them) are the scheduler's to handle first.
  return !proc_->has_pending_signals() && arrived() != nullptr;
}

std::coroutine_handle<> call_wait::suspend(std::coroutine_handle<> h) {
  if (limit_ && *limit_ <= std::chrono::steady_clock::duration::zero()) {
    // A zero timeout still lets what is queued be handled first.
    limit_ = std::chrono::steady_clock::duration{1};
  }
  return receive_prepare_suspend(*proc_, this, h, this, limit_);
}

bool call_wait::try_match_thunk(receive_waiter* self, process&) noexcept {
  auto* w = static_cast<call_wait*>(self);
  if (w->arrived() == nullptr)
    return false;
  receive_matched(*w->proc_, w);
  return true;
}

void call_wait::fire_thunk(timer_node* t, scheduler& s) noexcept {
  auto* w = static_cast<call_wait*>(static_cast<receive_timeout*>(t));
  (void)receive_timeout_fired(*w->proc_, w, s);
}

message_ptr call_wait::finish() noexcept {
  armed_ = false;
  process& p = *proc_;
  receive_cleanup(p, this, this);
  message_ptr m;
  if (process_extras* x = p.extras) {
    if (message** slot = x->calls.find(ref_.value())) {
      m.reset(*slot);
      x->calls.erase(ref_.value());
    }
  }
  // A DOWN for the call ended its monitor; otherwise drop the monitor now
  // (a DOWN already on its way is then discarded on arrival).
  if (m == nullptr || m->kind == item_kind::reply)
    (void)otp::demonitor(ref_);
  return m;
}

error call_wait::failure(message* down) const {
  if (down == nullptr) {
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(limit_.value_or(std::chrono::steady_clock::duration{}));
    return error{errc::timeout, "no reply from " + callee_.to_string() + " within " + std::to_string(ms.count()) + " ms"};
  }
  const exit_reason& why = payload<down_msg>(down).reason;
  if (why.which() == exit_reason::kind::noproc)
    return error{errc::noproc, callee_.to_string() + " is not alive", why};
  return error{errc::exited, callee_.to_string() + " exited with " + why.to_string() + " before it replied", why};
}

error call_wait::wrong_reply_type() const {
  return error{errc::invalid_argument, "the reply from " + callee_.to_string() + " is not of the type the call expects"};
}

void arm_call(process& me, monitor_ref ref) { (void)me.ext().calls.insert(ref.value(), nullptr); }

monitor_ref begin_call(process& me, const pid& to) {
  const monitor_ref ref = otp::monitor(to);
  arm_call(me, ref);
  return ref;
}

void abandon_call(process& me, monitor_ref ref) noexcept {
  if (process_extras* x = me.extras)
    drop_call_slot(*x, ref);
  try {
    (void)otp::demonitor(ref, true);
  } catch (...) {
  }
}

error call_refused(const pid& me, const pid& to) {
  if (!to)
    return error{errc::noproc, "call to an empty pid"};
  if (to == me)
    return error{errc::calling_self, me.to_string() + " called itself"};
  return error{errc::noproc, to.to_string() + " is not alive", exit_reason::noproc()};
}

} // namespace otp::detail
