// SPDX-License-Identifier: Apache-2.0
// otp/receive.hpp - selective receive: by type, by predicate, with a timeout.
#pragma once

#include "otp/detail/item.hpp"
#include "otp/detail/process.hpp"
#include "otp/scheduler.hpp"

#include <algorithm>
#include <chrono>
#include <concepts>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <new>
#include <optional>
#include <tuple>
#include <type_traits>
#include <utility>

namespace otp {

namespace detail {

template <class F, class = void>
struct handler_traits {
  static constexpr bool valid = false;
};
template <class R, class A>
struct handler_traits<R (*)(A), void> {
  static constexpr bool valid = true;
  using arg = std::remove_cvref_t<A>;
  using result = R;
};
template <class C, class R, class A>
struct handler_traits<R (C::*)(A) const, void> : handler_traits<R (*)(A)> {};
template <class C, class R, class A>
struct handler_traits<R (C::*)(A), void> : handler_traits<R (*)(A)> {};
template <class F>
struct handler_traits<F, std::void_t<decltype(&F::operator())>>
  : handler_traits<decltype(&F::operator())> {};

struct no_predicate {
  template <class T>
  constexpr bool operator()(const T&) const noexcept { return true; }
};

// One alternative of a receive: a message type, a predicate and a handler.
template <class T, class Pred, class F>
struct alternative {
  using message_type = T;
  using result_type = std::invoke_result_t<F&, T&&>;
  Pred pred;
  F handler;
  [[nodiscard]] bool matches(message* m) {
    return m->type == tag_of<T>() && static_cast<bool>(pred(std::as_const(payload<T>(m))));
  }
};

// Takes whatever message comes first and hands over ownership of it (the
// behaviours' loops, which dispatch on the type themselves).
struct any_alternative {
  using result_type = message_ptr;
  [[nodiscard]] static constexpr bool matches(message*) noexcept { return true; }
};

template <class A>
inline constexpr bool is_raw_v = std::is_same_v<A, any_alternative>;

template <class F>
struct after_clause {
  std::chrono::steady_clock::duration timeout;
  F handler;
};

template <class A>
struct is_after : std::false_type {};
template <class F>
struct is_after<after_clause<F>> : std::true_type {};

template <class A>
struct is_alternative : std::false_type {};
template <class T, class P, class F>
struct is_alternative<alternative<T, P, F>> : std::true_type {};

template <class H>
auto as_alternative(H&& h) {
  using D = std::remove_cvref_t<H>;
  if constexpr (is_alternative<D>::value) {
    return std::forward<H>(h);
  } else {
    static_assert(handler_traits<D>::valid,
                  "receive: each handler must take exactly one parameter, the message "
                  "(a non-generic lambda or a function); use otp::when(pred, handler) for guards");
    using T = typename handler_traits<D>::arg;
    return alternative<T, no_predicate, D>{no_predicate{}, std::forward<H>(h)};
  }
}

std::coroutine_handle<> receive_prepare_suspend(process& p, receive_waiter* w, std::coroutine_handle<> h,
                                                timer_node* timer,
                                                std::optional<std::chrono::steady_clock::duration> timeout);
void receive_cleanup(process& p, receive_waiter* w, timer_node* timer) noexcept;
void receive_matched(process& p, timer_node* timer) noexcept;
bool receive_timeout_fired(process& p, receive_waiter* w, scheduler& s) noexcept;

// The timer part of a receive that has an `after` clause.
struct receive_timeout : timer_node {
  std::chrono::steady_clock::duration timeout{};
};
struct receive_no_timeout {};
// A receive without a timeout keeps no pointer to its process: every call
// into it runs as that process (destroy_frame sets it for a kill), so it
// reads this_thread.current. Its timer fires on the scheduler, outside the
// process, so a receive with a timeout keeps one.
struct receive_no_owner {};

// The awaitable behind every receive. It lives in the awaiting frame: the
// scheduler asks it to look at new messages (try_match) and, with an
// `after` clause, its embedded timer node fires the timeout; nothing is
// allocated per receive, and a receive without a timeout carries no timer.
// Every word of it is a word of each process waiting in a receive (48
// bytes without a timeout: skynet's frame is 176 bytes, not 192).
template <class AfterF, class... Alts>
class receive_awaiter final
  : receive_waiter,
    std::conditional_t<std::is_void_v<AfterF>, receive_no_timeout, receive_timeout> {
  static constexpr bool has_timeout = !std::is_void_v<AfterF>;
  using after_storage = std::conditional_t<has_timeout, AfterF, receive_no_timeout>;

public:
  using result_type = std::common_type_t<typename Alts::result_type...>;

  explicit receive_awaiter(Alts... alts) requires(!has_timeout)
    : receive_waiter{&try_match_thunk}, alts_(std::move(alts)...) {}

  receive_awaiter(std::chrono::steady_clock::duration d, after_storage after, Alts... alts)
    requires(has_timeout)
    : receive_waiter{&try_match_thunk}, alts_(std::move(alts)...), after_(std::move(after)) {
    this->fire = &fire_thunk;
    this->timeout = d;
  }
  receive_awaiter(const receive_awaiter&) = delete;
  receive_awaiter& operator=(const receive_awaiter&) = delete;
  ~receive_awaiter() {
    if (armed_)
      receive_cleanup(owner(), this, timer());
    if (index_ == failed)
      error_.~exception_ptr();
    else if (matched_ != nullptr)
      matched_->destroy();
  }

  bool await_ready() {
    process& p = require_process("receive");
    armed_ = true;
    if constexpr (has_timeout)
      owner_ = &p;
    // Pending signals (an exit, a DOWN to convert) must be handled by the
    // scheduler first; only then may the mailbox be matched.
    if (p.has_pending_signals())
      return false;
    if (scan(p))
      return true;
    if (zero_timeout()) {
      timed_out_ = true;
      return true;
    }
    return false;
  }

  std::coroutine_handle<> await_suspend(std::coroutine_handle<> h) {
    std::optional<std::chrono::steady_clock::duration> t;
    if constexpr (has_timeout)
      t = this->timeout;
    return receive_prepare_suspend(owner(), this, h, timer(), t);
  }

  result_type await_resume() {
    if (index_ == failed) {
      std::exception_ptr e = std::move(error_);
      error_.~exception_ptr();
      index_ = -1;
      matched_ = nullptr;
      std::rethrow_exception(std::move(e));
    }
    if constexpr (has_timeout) {
      if (timed_out_)
        return after_();
    }
    struct free_on_exit {
      message* m;
      ~free_on_exit() {
        if (m != nullptr)
          m->destroy();
      }
    } guard{std::exchange(matched_, nullptr)};
    return dispatch(guard.m, std::index_sequence_for<Alts...>{});
  }

private:
  static constexpr std::int8_t failed = -2; // index_: a predicate threw, error_ holds it

  [[nodiscard]] process& owner() const noexcept {
    if constexpr (has_timeout)
      return *owner_;
    else
      return *this_thread.current;
  }
  [[nodiscard]] timer_node* timer() noexcept {
    if constexpr (has_timeout)
      return this;
    else
      return nullptr;
  }
  [[nodiscard]] bool zero_timeout() const noexcept {
    if constexpr (has_timeout)
      return this->timeout <= std::chrono::steady_clock::duration::zero();
    else
      return false;
  }

  template <std::size_t... I>
  result_type dispatch(message*& m, std::index_sequence<I...>) {
    if constexpr (std::is_void_v<result_type>) {
      (void)((index_ == I && (invoke<I>(m), true)) || ...);
    } else {
      std::optional<result_type> r;
      (void)((index_ == I && (r.emplace(invoke<I>(m)), true)) || ...);
      return std::move(*r);
    }
  }
  template <std::size_t I>
  decltype(auto) invoke(message*& m) {
    auto& alt = std::get<I>(alts_);
    using A = std::remove_reference_t<decltype(alt)>;
    if constexpr (is_raw_v<A>) {
      return message_ptr(std::exchange(m, nullptr));
    } else {
      // The match proved m a message_of<T>: its destroy is called directly
      // (inlined for a payload without a destructor), not through its type.
      using T = typename A::message_type;
      struct free_typed {
        message* m;
        ~free_typed() { message_of<T>::destroy_self(m); }
      } guard{std::exchange(m, nullptr)};
      return alt.handler(std::move(payload<T>(guard.m)));
    }
  }

  template <std::size_t... I>
  int match_one(message* m, std::index_sequence<I...>) {
    int found = -1;
    (void)((std::get<I>(alts_).matches(m) && (found = static_cast<int>(I), true)) || ...);
    return found;
  }

  // Scans the messages after the cursor; takes the first that matches.
  bool scan(process& p) {
    item* prev = cursor_;
    item* it = prev != nullptr ? prev->next : p.mailbox.head();
    while (it != nullptr) {
      auto* m = static_cast<message*>(it);
      int i = match_one(m, std::index_sequence_for<Alts...>{});
      if (i >= 0) {
        p.mailbox.unlink(prev, it);
        matched_ = m;
        index_ = static_cast<std::int8_t>(i);
        return true;
      }
      prev = it;
      it = it->next;
    }
    cursor_ = prev; // everything up to here failed to match: never rescanned
    return false;
  }

  static bool try_match_thunk(receive_waiter* self, process& p) noexcept {
    auto* a = static_cast<receive_awaiter*>(self);
    bool ok = false;
    try {
      ok = a->scan(p);
    } catch (...) {
      // A throwing predicate is the process's crash: resume it to rethrow.
      // Nothing matched, so matched_ is null and error_ takes its word.
      ::new (static_cast<void*>(&a->error_)) std::exception_ptr(std::current_exception());
      a->index_ = failed;
      ok = true;
    }
    if (!ok && a->zero_timeout()) {
      a->timed_out_ = true;
      ok = true;
    }
    if (ok)
      receive_matched(p, a->timer());
    return ok;
  }

  static void fire_thunk(timer_node* t, scheduler& s) noexcept {
    if constexpr (has_timeout) {
      auto* a = static_cast<receive_awaiter*>(static_cast<receive_timeout*>(t));
      if (receive_timeout_fired(*a->owner_, a, s))
        a->timed_out_ = true;
    }
  }

  [[no_unique_address]] std::tuple<Alts...> alts_;
  [[no_unique_address]] after_storage after_{};
  [[no_unique_address]] std::conditional_t<has_timeout, process*, receive_no_owner> owner_{};
  item* cursor_ = nullptr;
  union {
    message* matched_ = nullptr; // what scan took (index_ >= 0)
    std::exception_ptr error_;   // what a predicate threw (index_ == failed)
  };
  std::int8_t index_ = -1;
  bool timed_out_ = false;
  bool armed_ = false; // await_ready ran: the waiter may be registered
};

// A void "after" handler type for receives without one.
template <class R>
struct no_after {
  R operator()() const { return R{}; }
};

template <class T>
struct identity_handler {
  T operator()(T&& v) const { return std::move(v); }
};

template <class T>
struct ignore_handler {
  void operator()(T&&) const noexcept {}
};

template <class T>
struct optional_handler {
  std::optional<T> operator()(T&& v) const { return std::optional<T>{std::move(v)}; }
};

} // namespace detail

/// Predicate for `receive<down_msg>`: the DOWN of the monitor `ref`. A named
/// predicate (rather than a capturing lambda) is also safe with g++ 12.
struct down_of {
  monitor_ref ref;
  bool operator()(const down_msg& d) const noexcept { return d.ref == ref; }
};

/// Predicate for `receive<exit_msg>`: the 'EXIT' from `from`.
struct exit_of {
  pid from;
  bool operator()(const exit_msg& e) const noexcept { return e.from == from; }
};

/// A guarded alternative: matches a `T` (the handler's parameter type) only
/// when `pred(msg)` holds (Erlang's `when` guard).
template <class Pred, class F>
auto when(Pred pred, F handler) {
  using D = std::remove_cvref_t<F>;
  static_assert(detail::handler_traits<D>::valid,
                "when: the handler must take exactly one parameter, the message");
  using T = typename detail::handler_traits<D>::arg;
  static_assert(std::is_invocable_r_v<bool, Pred&, const T&>,
                "when: the predicate must accept const T& and return bool");
  return detail::alternative<T, Pred, D>{std::move(pred), std::move(handler)};
}

/// The timeout clause of a receive (Erlang's `after`); must come last.
template <class F>
auto after(std::chrono::steady_clock::duration d, F handler) {
  return detail::after_clause<F>{d, std::move(handler)};
}

/// Receives the first message, in mailbox order, that matches one of the
/// handlers, runs that handler and returns its result; messages that match
/// nothing stay in the mailbox, in order. An optional last `after(d, f)`
/// clause returns f() if nothing matches within `d` (0: only what is there now).
///
///     auto r = co_await otp::receive(
///       [](ping p) { return p.n; },
///       otp::when([](const job& j) { return j.urgent; }, [](job j) { return j.id; }),
///       otp::after(100ms, [] { return -1; }));
template <class... Hs>
  requires(sizeof...(Hs) > 0)
auto receive(Hs&&... hs) {
  constexpr bool last_is_after =
    detail::is_after<std::remove_cvref_t<std::tuple_element_t<sizeof...(Hs) - 1, std::tuple<Hs...>>>>::value;
  auto all = std::forward_as_tuple(std::forward<Hs>(hs)...);
  if constexpr (last_is_after) {
    return [&]<std::size_t... I>(std::index_sequence<I...>) {
      auto&& a = std::get<sizeof...(Hs) - 1>(all);
      using A = std::remove_cvref_t<decltype(a)>;
      using AfterF = decltype(A::handler);
      return detail::receive_awaiter<AfterF, decltype(detail::as_alternative(std::get<I>(std::move(all))))...>{
        a.timeout, std::move(a.handler), detail::as_alternative(std::get<I>(std::move(all)))...};
    }(std::make_index_sequence<sizeof...(Hs) - 1>{});
  } else {
    return [&]<std::size_t... I>(std::index_sequence<I...>) {
      return detail::receive_awaiter<void, decltype(detail::as_alternative(std::get<I>(std::move(all))))...>{
        detail::as_alternative(std::get<I>(std::move(all)))...};
    }(std::make_index_sequence<sizeof...(Hs)>{});
  }
}

/// Receives the first message of type `T` (the others stay, in order).
template <class T>
auto receive() {
  using alt = detail::alternative<T, detail::no_predicate, detail::identity_handler<T>>;
  return detail::receive_awaiter<void, alt>{alt{}};
}

/// Receives the first message of type `T` for which `pred` holds.
template <class T, class Pred>
  requires std::is_invocable_r_v<bool, Pred&, const T&>
auto receive(Pred pred) {
  using alt = detail::alternative<T, Pred, detail::identity_handler<T>>;
  return detail::receive_awaiter<void, alt>{alt{std::move(pred), {}}};
}

/// Receives the first `T` within `timeout`; nothing if none came (0: poll).
template <class T>
auto receive_for(std::chrono::steady_clock::duration timeout) {
  using alt = detail::alternative<T, detail::no_predicate, detail::optional_handler<T>>;
  using after_f = detail::no_after<std::optional<T>>;
  return detail::receive_awaiter<after_f, alt>{timeout, after_f{}, alt{}};
}

/// Receives the first `T` satisfying `pred` within `timeout`.
template <class T, class Pred>
  requires std::is_invocable_r_v<bool, Pred&, const T&>
auto receive_for(std::chrono::steady_clock::duration timeout, Pred pred) {
  using alt = detail::alternative<T, Pred, detail::optional_handler<T>>;
  using after_f = detail::no_after<std::optional<T>>;
  return detail::receive_awaiter<after_f, alt>{timeout, after_f{}, alt{std::move(pred), {}}};
}

namespace detail {

/// @private Takes the next message, whatever its type (for behaviours).
inline auto receive_any() { return receive_awaiter<void, any_alternative>{any_alternative{}}; }

/// @private Takes the next message within `d`; null if none came.
inline auto receive_any_for(std::chrono::steady_clock::duration d) {
  using after_f = no_after<message_ptr>;
  return receive_awaiter<after_f, any_alternative>{d, after_f{}, any_alternative{}};
}

} // namespace detail

namespace detail {

// The awaitable of sleep_for: a wait that no message ends, so it never
// looks at the mailbox (its cost does not grow with the queue).
class sleep_awaiter final : receive_waiter, receive_timeout {
public:
  explicit sleep_awaiter(std::chrono::steady_clock::duration d) noexcept : receive_waiter{&never_matches} {
    this->fire = &fire_thunk;
    this->timeout = d;
  }
  sleep_awaiter(const sleep_awaiter&) = delete;
  sleep_awaiter& operator=(const sleep_awaiter&) = delete;
  ~sleep_awaiter() {
    if (proc_ != nullptr)
      receive_cleanup(*proc_, this, this);
  }

  bool await_ready() {
    proc_ = &require_process("sleep_for");
    return this->timeout <= std::chrono::steady_clock::duration::zero() && !proc_->has_pending_signals();
  }
  std::coroutine_handle<> await_suspend(std::coroutine_handle<> h) {
    // sleep_for(0) with signals queued: handled, then resumed at once.
    const auto d = std::max(this->timeout, std::chrono::steady_clock::duration{1});
    return receive_prepare_suspend(*proc_, this, h, this, d);
  }
  void await_resume() const noexcept {}

private:
  static bool never_matches(receive_waiter*, process&) noexcept { return false; }
  static void fire_thunk(timer_node* t, scheduler& s) noexcept {
    auto* a = static_cast<sleep_awaiter*>(static_cast<receive_timeout*>(t));
    (void)receive_timeout_fired(*a->proc_, a, s);
  }

  process* proc_ = nullptr;
};

} // namespace detail

/// Suspends the calling process for `d` (timer:sleep/1); the mailbox is
/// left as it is, and not looked at.
inline detail::sleep_awaiter sleep_for(std::chrono::steady_clock::duration d) { return detail::sleep_awaiter{d}; }

} // namespace otp
