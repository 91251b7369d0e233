// SPDX-License-Identifier: Apache-2.0
// behaviours/gen_server.hpp - the generic server behaviour (OTP's gen_server).
//
// A module is a plain struct that holds the server's state; its callbacks
// are found by name and checked with concepts (STYLE.md 2.4):
//
//   struct counter {
//     struct get {};
//     struct add { int n; };
//     int value = 0;
//     int handle_call(otp::context&, get) { return value; }
//     void handle_cast(otp::context&, add a) { value += a.n; }
//   };
//   auto s = co_await otp::gen_server::start<counter>();
//   int v = (co_await otp::gen_server::call(s.value(), counter::get{})).value();
//
// Each callback may be a plain function or return otp::task<...>.
#pragma once

#include "otp/call.hpp"
#include "otp/crash_report.hpp"
#include "otp/detail/runtime.hpp"
#include "otp/error.hpp"
#include "otp/process.hpp"
#include "otp/receive.hpp"
#include "otp/task.hpp"
#include "registry/name.hpp"

#include <chrono>
#include <concepts>
#include <cstdint>
#include <exception>
#include <optional>
#include <ostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <variant>

namespace otp {

class context;

/// handle_call's way to say "no reply now" (OTP's `{noreply, State}`): the
/// reply comes later through the handle from context::defer_reply.
struct noreply_t {
  explicit constexpr noreply_t() = default;
};
inline constexpr noreply_t noreply{};

/// What handle_call returns when it may not reply at once: a reply value,
/// or otp::noreply.
template <class R>
class call_result {
public:
  call_result(R value) : v_(std::move(value)) {} // NOLINT: implicit on purpose
  call_result(noreply_t) noexcept {}             // NOLINT
  [[nodiscard]] bool has_reply() const noexcept { return v_.has_value(); }
  [[nodiscard]] R take() { return std::move(*v_); }

private:
  std::optional<R> v_;
};

template <>
class call_result<void> {
public:
  call_result() noexcept = default;
  call_result(noreply_t) noexcept : reply_(false) {} // NOLINT
  [[nodiscard]] bool has_reply() const noexcept { return reply_; }

private:
  bool reply_ = true;
};

/// What init returns (OTP's `{ok, S}`, `{stop, Reason}`, `ignore`). A void
/// init means ok.
class init_result {
public:
  [[nodiscard]] static init_result ok() noexcept { return init_result{outcome_t::ok, {}}; }
  /// Start fails with `why`; the server exits with it.
  [[nodiscard]] static init_result stop(exit_reason why) { return init_result{outcome_t::stop, std::move(why)}; }
  /// The server does not start; start returns `ignored` (a supervisor keeps the child's spec).
  [[nodiscard]] static init_result ignore() noexcept { return init_result{outcome_t::ignore, {}}; }

  enum class outcome_t : std::uint8_t { ok, stop, ignore };
  [[nodiscard]] outcome_t outcome() const noexcept { return outcome_; }
  [[nodiscard]] const exit_reason& reason() const noexcept { return reason_; }

private:
  init_result(outcome_t o, exit_reason r) : reason_(std::move(r)), outcome_(o) {}
  exit_reason reason_;
  outcome_t outcome_;
};

/// Delivered to handle_info when the idle timeout set with
/// context::set_timeout expires before a message comes (OTP's `timeout`).
struct idle_timeout {};

/// Any message, for a handle_info that takes whatever comes (Erlang's
/// catch-all clause): ask for the type you expect.
class any_message {
public:
  explicit any_message(detail::message_ptr m) noexcept : m_(std::move(m)) {}
  /// Returns whether the message is a `T`.
  template <class T>
  [[nodiscard]] bool is() const noexcept {
    return m_->type == detail::tag_of<T>();
  }
  /// Returns the message as a `T`, or null if it is not one.
  template <class T>
  [[nodiscard]] T* get() noexcept {
    return is<T>() ? &detail::payload<T>(m_.get()) : nullptr;
  }

private:
  detail::message_ptr m_;
};

/// A started gen_server of module M: a pid that remembers its module, so
/// that calls and casts are checked against M's callbacks.
template <class M>
class server_ref {
public:
  server_ref() = default;
  explicit server_ref(const otp::pid& p) noexcept : pid_(p) {}
  [[nodiscard]] const otp::pid& pid() const noexcept { return pid_; }
  operator const otp::pid&() const noexcept { return pid_; } // NOLINT: a server is a process
  friend bool operator==(const server_ref&, const server_ref&) = default;

private:
  otp::pid pid_;
};

/// A server's counters (sys:statistics-like). Reply times are measured
/// only for servers started with `statistics = true`.
struct server_statistics {
  std::uint64_t calls = 0;
  std::uint64_t casts = 0;
  std::uint64_t infos = 0;
  std::uint64_t unexpected = 0; ///< messages handle_info does not accept, dropped
  std::uint64_t refused = 0;    ///< requests made for another module, refused (errc::bad_request)
  std::chrono::nanoseconds call_time_total{0};
  std::chrono::nanoseconds call_time_max{0};
};

namespace detail {
class gs_core;
template <class M>
class gs_server;
struct gs_call_state {
  pid caller;
  std::uint64_t tag = 0;
  type_tag reply_type = nullptr;
  bool deferred = false;
};
} // namespace detail

/// What a gen_server's callbacks may ask of their server, passed as the
/// first argument of every callback (OTP's return tuples, as requests).
class context {
public:
  /// Returns the server's pid.
  [[nodiscard]] const pid& self() const noexcept { return self_; }
  /// Returns the server's parent: the process that started it linked, or
  /// the server itself when it was started without a link.
  [[nodiscard]] const pid& parent() const noexcept { return parent_; }

  /// Stops the server once this callback returns: terminate runs, then a
  /// handle_call's reply is sent, then the server exits with `why` (OTP's
  /// `{stop, Reason, Reply, State}` and `{stop, Reason, State}`).
  void stop(exit_reason why = exit_reason::normal()) { stop_ = std::move(why); }

  /// Runs handle_continue(ctx, value) before the next message (OTP's
  /// `{continue, C}`). handle_continue must accept the value's type.
  template <class C>
  void continue_with(C value) {
    continue_.reset(detail::make_message<std::decay_t<C>>(std::move(value)));
  }

  /// Delivers otp::idle_timeout to handle_info if no message comes within
  /// `d` after this callback (OTP's `Timeout` return). It applies to the
  /// next wait only; each callback sets it again if it wants it.
  void set_timeout(std::chrono::steady_clock::duration d) noexcept { timeout_ = d; }

  /// Inside handle_call: returns the caller's reply handle and leaves the
  /// reply to whoever holds it (otp::reply). handle_call then returns
  /// otp::noreply. `R` must be the call's reply type.
  template <class R>
  [[nodiscard]] from<R> defer_reply() {
    if (!call_)
      throw std::logic_error("context::defer_reply must be called inside handle_call");
    if (call_->reply_type != detail::reply_tag_of<detail::reply_storage_t<R>>())
      throw std::logic_error("context::defer_reply<R>: R is not the reply type of this call");
    call_->deferred = true;
    return from<R>{call_->caller, call_->tag};
  }

private:
  friend class detail::gs_core;

  pid self_;
  pid parent_;
  std::optional<exit_reason> stop_;
  detail::message_ptr continue_;
  std::optional<std::chrono::steady_clock::duration> timeout_;
  std::optional<detail::gs_call_state> call_;
};

namespace detail {

template <class T>
struct task_traits {
  static constexpr bool is_task = false;
  using value_type = T;
};
template <class T>
struct task_traits<task<T>> {
  static constexpr bool is_task = true;
  using value_type = T;
};

template <class T>
struct call_result_traits {
  static constexpr bool is_call_result = false;
  using reply_type = T;
};
template <class R>
struct call_result_traits<call_result<R>> {
  static constexpr bool is_call_result = true;
  using reply_type = R;
};

template <class M, class Req>
concept handles_call = requires(M& m, context& c, Req&& r) { m.handle_call(c, std::move(r)); };
template <class M, class Req>
concept handles_cast = requires(M& m, context& c, Req&& r) { m.handle_cast(c, std::move(r)); };
template <class M>
concept has_init = requires(M& m, context& c) { m.init(c); };
template <class M>
concept has_terminate = requires(M& m, context& c, const exit_reason& r) { m.terminate(c, r); };

// Stands for the reply type of a request M does not handle, so that the
// static_assert in call() is the one error the user sees.
struct not_a_call {};

template <class M, class Req>
struct call_reply {
  using type = not_a_call;
};
template <class M, class Req>
  requires handles_call<M, Req>
struct call_reply<M, Req> {
  using ret = decltype(std::declval<M&>().handle_call(std::declval<context&>(), std::declval<Req&&>()));
  using type = typename call_result_traits<typename task_traits<ret>::value_type>::reply_type;
};
template <class M, class Req>
using call_reply_t = typename call_reply<M, Req>::type;

// The parameter type of a single, non-template callback `name(context&, T)`.
template <class F>
struct callback_arg {
  static constexpr bool valid = false;
};
template <class C, class R, class A>
struct callback_arg<R (C::*)(context&, A)> {
  static constexpr bool valid = true;
  using type = std::remove_cvref_t<A>;
};
template <class C, class R, class A>
struct callback_arg<R (C::*)(context&, A) noexcept> : callback_arg<R (C::*)(context&, A)> {};

// Whether M has any member named handle_info / handle_continue, however
// declared: a base with a member of the same name makes the name ambiguous.
struct info_probe {
  int handle_info;
  int handle_continue;
};
template <class M>
struct probe : M, info_probe {};
template <class M>
concept names_handle_info = std::is_class_v<M> && !std::is_final_v<M> && !requires { &probe<M>::handle_info; };
template <class M>
concept names_handle_continue =
  std::is_class_v<M> && !std::is_final_v<M> && !requires { &probe<M>::handle_continue; };

template <class M>
concept single_handle_info = requires { &M::handle_info; } && callback_arg<decltype(&M::handle_info)>::valid;
template <class M>
concept single_handle_continue = requires { &M::handle_continue; } && callback_arg<decltype(&M::handle_continue)>::valid;

template <class T>
struct is_variant : std::false_type {};
template <class... Ts>
struct is_variant<std::variant<Ts...>> : std::true_type {};

// Builds the argument of type T (a message type, a variant of them, or
// any_message) from `m` if `m` fits; empty otherwise.
template <class T>
std::optional<T> accept_as(message_ptr& m) {
  if constexpr (std::is_same_v<T, any_message>) {
    return std::optional<T>(std::in_place, std::move(m));
  } else if constexpr (is_variant<T>::value) {
    return []<class... Ts>(message_ptr& msg, std::type_identity<std::variant<Ts...>>) {
      std::optional<T> out;
      (void)((msg->type == tag_of<Ts>() && (out.emplace(std::in_place_type<Ts>, std::move(payload<Ts>(msg.get()))), true))
             || ...);
      return out;
    }(m, std::type_identity<T>{});
  } else {
    if (m->type != tag_of<T>())
      return std::nullopt;
    return std::optional<T>(std::move(payload<T>(m.get())));
  }
}

// Messages of every gen_server's protocol that do not depend on the module.
struct system_msg {
  enum class kind : std::uint8_t { stop, statistics } what;
  exit_reason reason;
  std::uint64_t tag = 0;
  pid caller;
};

enum class gs_kind : std::uint8_t { call, cast, get_state };

struct gs_request;

// Where the reply to a call or get_state goes.
struct gs_reply_address {
  pid caller;
  std::uint64_t tag = 0;
};

// What a request is, one static object per module, request type and kind:
// the module its sender meant, its type, how to run it, and where its reply
// goes. Kept out of the message, so a request carries one pointer (a cast of
// a small type fits a 48-byte block).
struct gs_request_info {
  const std::type_info* module_type;
  const std::type_info* request_type;
  gs_kind kind;
  // Runs the request on the server (a gs_server<M>, as the module meant).
  std::optional<task<void>> (*run)(gs_request& r, gs_core& server);
  // The reply address of a call or get_state; null for a cast.
  const gs_reply_address* (*reply_address)(const gs_request& r) noexcept;
  void (*destroy)(message* m) noexcept;
};

// A request to a gen_server of any module. Its type tag is its module's
// (one compare on a server's own requests), and item_flag_request marks it
// as a request, so that a server recognises one meant for another module (a
// call by name or by a rebuilt ref compiles against any process) and
// refuses it at once instead of leaving its caller to wait.
struct gs_request : message {
  const gs_request_info* info;
  gs_request(type_tag module_tag, const gs_request_info* i) noexcept : message(module_tag), info(i) {
    flags |= item_flag_request;
  }
  // A module's requests have bodies of several types: each frees its own.
  static void destroy_by_info(message* m) noexcept { static_cast<gs_request*>(m)->info->destroy(m); }
};

// The type tag of module M's requests.
template <class M>
inline constexpr message_type request_type_v{&gs_request::destroy_by_info};
template <class M>
[[nodiscard]] constexpr type_tag request_tag_of() noexcept {
  return &request_type_v<M>;
}

template <class M, class Body>
struct gs_item final : gs_request {
  Body body;
  explicit gs_item(Body b) : gs_request(request_tag_of<M>(), &info), body(std::move(b)) {}

  static std::optional<task<void>> run_self(gs_request& r, gs_core& server) {
    return Body::run(static_cast<gs_item&>(r).body, static_cast<gs_server<M>&>(server));
  }
  static const gs_reply_address* reply_address_of(const gs_request& r) noexcept {
    if constexpr (Body::kind == gs_kind::cast)
      return nullptr;
    else
      return &static_cast<const gs_item&>(r).body.to;
  }

  static void destroy_self(message* m) noexcept {
    auto* self = static_cast<gs_item*>(m);
    self->~gs_item();
    free_item_storage<gs_item>(self);
  }
  static constexpr gs_request_info info{&typeid(M), Body::request_type, Body::kind, &run_self, &reply_address_of,
                                        &destroy_self};
};

// Builds the request.
template <class M, class Body>
[[nodiscard]] message* make_envelope(Body body) {
  // Aligned as the request type needs (a pool block is 16-aligned).
  void* mem = allocate_item_storage<gs_item<M, Body>>();
  try {
    return ::new (mem) gs_item<M, Body>(std::move(body));
  } catch (...) {
    free_item_storage<gs_item<M, Body>>(mem);
    throw;
  }
}

template <class R>
[[nodiscard]] from<R> reply_handle(const gs_reply_address& a) noexcept {
  return from<R>{a.caller, a.tag};
}

template <class M, class Req>
struct call_body {
  static constexpr gs_kind kind = gs_kind::call;
  static constexpr const std::type_info* request_type = &typeid(Req);
  gs_reply_address to;
  Req req;
  static std::optional<task<void>> run(call_body& b, gs_server<M>& s) {
    return s.on_call(reply_handle<call_reply_t<M, Req>>(b.to), b.req);
  }
};

template <class M, class Req>
struct cast_body {
  static constexpr gs_kind kind = gs_kind::cast;
  static constexpr const std::type_info* request_type = &typeid(Req);
  Req req;
  static std::optional<task<void>> run(cast_body& b, gs_server<M>& s) { return s.on_cast(b.req); }
};

template <class M>
struct get_state_body {
  static constexpr gs_kind kind = gs_kind::get_state;
  static constexpr const std::type_info* request_type = &typeid(M);
  gs_reply_address to;
  static std::optional<task<void>> run(get_state_body& b, gs_server<M>& s) {
    otp::reply(reply_handle<M>(b.to), s.module());
    return std::nullopt;
  }
};

void report_unexpected_info(const pid& server) noexcept;

// Refuses a request of another module (`mine` is the server's): a call or
// get_state fails at once with errc::bad_request, and the refusal is logged.
void refuse_request(const gs_request& r, const pid& server, const std::string& name,
                    const std::type_info& mine) noexcept;

// The message a server was handling when it ended, for its crash report.
struct gs_last_message {
  enum class kind_t : std::uint8_t { none, call, cast, get_state, info, timeout, continue_with, parent_exit, stop };
  kind_t kind = kind_t::none;
  const std::type_info* type = nullptr; // the request, message or continue value; null if unknown
  pid from;                             // the caller of a call, the parent of parent_exit
  exit_reason reason;                   // the parent's, for parent_exit
  // Per message: two stores; `from` and `reason` are set by the kinds that use them.
  void note(kind_t k, const std::type_info* t) noexcept {
    kind = k;
    type = t;
  }
};

// Logs gen_server's "terminating" report (domain "gen_server", kind
// "terminate") if `why` is reported at all; `state` is null when the
// module is not printable.
void report_terminate(const pid& server, const std::string& name, const gs_last_message& last,
                      const std::string* state, const exit_reason& why) noexcept;

// A module whose state a crash report can print: `os << m` works.
template <class M>
concept printable_state = requires(std::ostream& os, const M& m) {
  { os << m } -> std::convertible_to<std::ostream&>;
};

// What a starting server tells its starter: started, or why not.
struct init_ack {
  std::optional<error> failure;
};
[[nodiscard]] error init_failed(const pid& server, const exit_reason& why);

class gs_core;

// What the module-independent part of a server needs of its module: one
// static table per module, so that the loop is compiled once (gen_server.cpp)
// instead of once per module in every file that starts one.
struct gs_module_ops {
  const std::type_info* module_type;
  type_tag request_tag;
  // handle_info of a message (or of an idle_timeout); a task if the callback awaits.
  std::optional<task<void>> (*info)(gs_core& s, message_ptr& m);
  // handle_continue of a continue_with value; a task if the callback awaits.
  std::optional<task<void>> (*continue_with)(gs_core& s, message_ptr& m);
  // terminate, null if the module has none; a task if it awaits.
  std::optional<task<void>> (*terminate)(gs_core& s, const exit_reason& why);
  // Prints the module's state for a crash report; null if it is not printable.
  void (*print)(gs_core& s, std::string& out);
};

// init's outcome: known at once, or a task to await.
struct gs_init_step {
  std::optional<init_result> done;
  std::optional<task<init_result>> pending;
};

// A server's loop, its system messages, terminate and reports: everything
// that does not depend on the module (gen_server.cpp).
class gs_core {
protected:
  // Without a link the server is its own parent, as in OTP (gen.erl's
  // `nolink`): an exit signal from its starter is then an ordinary message.
  gs_core(const gs_module_ops& ops, const pid& self, const pid& parent, bool timing) noexcept
    : ops_(&ops), timing_(timing) {
    ctx_.self_ = self;
    ctx_.parent_ = parent ? parent : self;
  }
  ~gs_core() = default;
  gs_core(const gs_core&) = delete;
  gs_core& operator=(const gs_core&) = delete;

  // The server's body: register, init (through `init`, which builds the
  // module from `init_args`), acknowledge, then take messages until it stops.
  task<void> run(from<init_ack> starter, std::optional<server_name> name,
                 gs_init_step (*init)(gs_core& s, void* init_args), void* init_args);

  // A call starts: its reply handle is what context::defer_reply returns.
  void begin_call(const pid& caller, std::uint64_t tag, type_tag reply_type) {
    ++stats_.calls;
    last_.from = caller;
    ctx_.call_.emplace(gs_call_state{caller, tag, reply_type, false});
  }
  // Sends a handle_call's reply (null: none), or keeps it until terminate
  // ran when the callback also stopped the server.
  void finish_reply(const pid& caller, message* reply) noexcept;
  void unexpected() noexcept;

  context ctx_;
  gs_last_message last_;
  server_statistics stats_;

private:
  std::optional<task<void>> dispatch(message_ptr& m, bool& timed_call);
  bool is_system(const message_ptr& m) const noexcept;
  task<void> run_terminate(exit_reason why);
  void report(const exit_reason& why) noexcept;

  const gs_module_ops* ops_;
  std::string name_; // the registered name as reports print it ('name', via key); empty if none
  message_ptr pending_reply_;
  pid pending_to_;
  static constexpr unsigned fair_share = 64; // messages handled between two yields
  unsigned handled_since_yield_ = 0;
  bool timing_ = false;
};

// The process behind a gen_server of module M: the module's state and the
// calls into its callbacks; the rest is gs_core's.
template <class M>
class gs_server final : public gs_core {
public:
  gs_server(const pid& self, const pid& parent, bool timing) noexcept : gs_core(ops, self, parent, timing) {}

  [[nodiscard]] M& module() noexcept { return *mod_; }

  // The process's body: the server lives in this frame.
  template <class... A>
  static task<void> main(from<init_ack> starter, std::optional<server_name> name, bool timing, pid parent,
                         A... args) {
    gs_server s(require_process("gen_server").self(), parent, timing);
    std::tuple<A&...> refs(args...);
    co_await s.run(std::move(starter), std::move(name), &start_module<A...>, &refs);
  }

  // --- requests (called through the envelopes)

  template <class R, class Req>
  std::optional<task<void>> on_call(const from<R>& f, Req& req) {
    begin_call(f.caller(), f.tag(), reply_tag_of<reply_storage_t<R>>());
    using ret = decltype(module().handle_call(ctx_, std::move(req)));
    if constexpr (task_traits<ret>::is_task) {
      return call_async<R, Req>(this, &req, f);
    } else if constexpr (std::is_void_v<ret>) {
      module().handle_call(ctx_, std::move(req));
      finish_call<R>(f, call_result<void>{});
      return std::nullopt;
    } else {
      finish_call<R>(f, module().handle_call(ctx_, std::move(req)));
      return std::nullopt;
    }
  }

  template <class Req>
  std::optional<task<void>> on_cast(Req& req) {
    ++stats_.casts;
    using ret = decltype(module().handle_cast(ctx_, std::move(req)));
    if constexpr (task_traits<ret>::is_task) {
      return module().handle_cast(ctx_, std::move(req));
    } else {
      module().handle_cast(ctx_, std::move(req));
      return std::nullopt;
    }
  }

private:
  template <class... A>
  static gs_init_step start_module(gs_core& c, void* init_args) {
    auto& s = static_cast<gs_server&>(c);
    std::apply(
      [&s](A&... a) {
        if constexpr (std::is_constructible_v<M, A&&...>)
          s.mod_.emplace(std::move(a)...);
        else
          s.mod_.emplace(M{std::move(a)...});
      },
      *static_cast<std::tuple<A&...>*>(init_args));
    return s.init_module();
  }

  gs_init_step init_module() {
    if constexpr (has_init<M>) {
      using ret = decltype(module().init(ctx_));
      using value = typename task_traits<ret>::value_type;
      static_assert(std::is_void_v<value> || std::is_same_v<value, init_result>,
                    "gen_server: init(otp::context&) must return void or otp::init_result (or a task of them)");
      if constexpr (task_traits<ret>::is_task) {
        if constexpr (std::is_void_v<value>)
          return {.done = std::nullopt, .pending = init_async(this)};
        else
          return {.done = std::nullopt, .pending = module().init(ctx_)};
      } else if constexpr (std::is_void_v<value>) {
        module().init(ctx_);
        return {.done = init_result::ok(), .pending = std::nullopt};
      } else {
        return {.done = module().init(ctx_), .pending = std::nullopt};
      }
    } else {
      return {.done = init_result::ok(), .pending = std::nullopt};
    }
  }

  static task<init_result> init_async(gs_server* s) {
    co_await s->module().init(s->ctx_);
    co_return init_result::ok();
  }

  template <class R, class Req>
  static task<void> call_async(gs_server* s, Req* req, from<R> f) {
    using value = typename task_traits<decltype(s->module().handle_call(s->ctx_, std::move(*req)))>::value_type;
    if constexpr (std::is_void_v<value>) {
      co_await s->module().handle_call(s->ctx_, std::move(*req));
      s->finish_call<R>(f, call_result<void>{});
    } else {
      value v = co_await s->module().handle_call(s->ctx_, std::move(*req));
      s->finish_call<R>(f, std::move(v));
    }
  }

  template <class R, class X>
  void finish_call(const from<R>& f, X&& x) {
    using stored = reply_storage_t<R>;
    if constexpr (call_result_traits<std::decay_t<X>>::is_call_result) {
      if (!x.has_reply())
        return finish_reply(f.caller(), nullptr);
      if constexpr (std::is_void_v<R>)
        finish_reply(f.caller(), make_reply<stored>(f.tag()));
      else
        finish_reply(f.caller(), make_reply<stored>(f.tag(), x.take()));
    } else {
      finish_reply(f.caller(), make_reply<stored>(f.tag(), std::forward<X>(x)));
    }
  }

  static std::optional<task<void>> on_info(gs_core& c, message_ptr& m) {
    if constexpr (single_handle_info<M>) {
      auto& s = static_cast<gs_server&>(c);
      using T = typename callback_arg<decltype(&M::handle_info)>::type;
      auto arg = accept_as<T>(m);
      if (!arg) {
        s.unexpected();
        return std::nullopt;
      }
      ++s.stats_.infos;
      if constexpr (is_variant<T>::value)
        s.last_.type = std::visit([](const auto& v) { return &typeid(v); }, *arg);
      else if constexpr (!std::is_same_v<T, any_message>)
        s.last_.type = &typeid(T);
      using ret = decltype(s.module().handle_info(s.ctx_, std::move(*arg)));
      if constexpr (task_traits<ret>::is_task) {
        return info_async<T>(&s, std::move(*arg));
      } else {
        s.module().handle_info(s.ctx_, std::move(*arg));
        return std::nullopt;
      }
    } else {
      static_assert(!names_handle_info<M>,
                    "gen_server: handle_info must be one non-template member function "
                    "handle_info(otp::context&, T), where T is a message type, a std::variant of "
                    "message types, or otp::any_message");
      (void)m;
      static_cast<gs_server&>(c).unexpected();
      return std::nullopt;
    }
  }

  template <class T>
  static task<void> info_async(gs_server* s, T arg) {
    co_await s->module().handle_info(s->ctx_, std::move(arg));
  }

  static std::optional<task<void>> on_continue(gs_core& c, message_ptr& m) {
    if constexpr (single_handle_continue<M>) {
      auto& s = static_cast<gs_server&>(c);
      using T = typename callback_arg<decltype(&M::handle_continue)>::type;
      s.last_.note(gs_last_message::kind_t::continue_with, &typeid(T));
      auto arg = accept_as<T>(m);
      if (!arg)
        throw std::logic_error("gen_server: handle_continue does not accept the value given to continue_with");
      using ret = decltype(s.module().handle_continue(s.ctx_, std::move(*arg)));
      if constexpr (task_traits<ret>::is_task) {
        return continue_async<T>(&s, std::move(*arg));
      } else {
        s.module().handle_continue(s.ctx_, std::move(*arg));
        return std::nullopt;
      }
    } else {
      static_assert(!names_handle_continue<M>,
                    "gen_server: handle_continue must be one non-template member function "
                    "handle_continue(otp::context&, T)");
      (void)c;
      (void)m;
      // OTP: a {continue, C} without handle_continue exits with undef.
      throw std::logic_error("gen_server: continue_with was used but the module has no handle_continue");
    }
  }

  template <class T>
  static task<void> continue_async(gs_server* s, T arg) {
    co_await s->module().handle_continue(s->ctx_, std::move(arg));
  }

  static std::optional<task<void>> on_terminate(gs_core& c, const exit_reason& why) {
    auto& s = static_cast<gs_server&>(c);
    using ret = decltype(s.module().terminate(s.ctx_, why));
    if constexpr (task_traits<ret>::is_task) {
      return s.module().terminate(s.ctx_, why);
    } else {
      s.module().terminate(s.ctx_, why);
      return std::nullopt;
    }
  }

  static void print_state(gs_core& c, std::string& out) {
    std::ostringstream os;
    os << static_cast<gs_server&>(c).module();
    out = std::move(os).str();
  }

  static constexpr gs_module_ops ops{
    .module_type = &typeid(M),
    .request_tag = request_tag_of<M>(),
    .info = &on_info,
    .continue_with = &on_continue,
    .terminate = [] {
      if constexpr (has_terminate<M>)
        return &on_terminate;
      else
        return static_cast<std::optional<task<void>> (*)(gs_core&, const exit_reason&)>(nullptr);
    }(),
    .print = [] {
      if constexpr (printable_state<M>)
        return &print_state;
      else
        return static_cast<void (*)(gs_core&, std::string&)>(nullptr);
    }(),
  };

  std::optional<M> mod_;
};

template <class M, class Req>
struct cast_check {
  static_assert(handles_cast<M, Req>,
                "otp::gen_server::cast: the server's module has no handle_cast(otp::context&, Req) "
                "for this request type");
  static constexpr bool ok = handles_cast<M, Req>;
};

template <class M, class Req>
struct call_check {
  static_assert(handles_call<M, Req>,
                "otp::gen_server::call: the server's module has no handle_call(otp::context&, Req) "
                "for this request type");
  static constexpr bool ok = handles_call<M, Req>;
};

} // namespace detail

/// The generic server behaviour: start, call, cast, stop (OTP's gen_server).
namespace gen_server {

/// How a server is started.
struct start_options {
  /// Register the server under this name before its init runs.
  std::optional<server_name> name{};
  /// Link the caller and the server (start_link).
  bool link = false;
  /// Kill the server and fail with `timeout` if init takes longer.
  otp::timeout init_timeout = otp::infinity;
  /// The scheduler to run the server on (default: the caller's).
  std::optional<unsigned> scheduler{};
  /// Measure reply times (gen_server::statistics).
  bool statistics = false;
};

} // namespace gen_server

namespace detail {
// The module-independent steps of start (not coroutines: a start makes one
// frame, start_opt's). Spawns `frame` (a gs_server<M>::main) as `o` says,
// monitored as `ref`, the call armed; fails with node_stopped.
[[nodiscard]] result<pid> spawn_server(process& me, const gen_server::start_options& o, monitor_ref ref,
                                       task<void> frame);
// The start's result once the server acknowledged (or not): a server whose
// init timed out is killed.
[[nodiscard]] result<pid> started_server(const pid& server, result<init_ack> ack);
} // namespace detail

namespace gen_server {

/// Starts a server of module M, constructed from `args` inside the new
/// process, and returns once its init returned (gen_server:start/4). Fails
/// with `already_started` (the name is taken: the context names the
/// holder), `exited` (init stopped or threw: error::reason says why),
/// `ignored` (init returned ignore), or `timeout`.
template <class M, class... A>
task<result<server_ref<M>>> start_opt(start_options o, A... args) {
  static_assert(std::is_class_v<M>, "gen_server: the module must be a class");
  static_assert(std::is_constructible_v<M, A&&...> || requires { M{std::declval<A&&>()...}; },
                "gen_server::start: the module cannot be constructed from these arguments");
  detail::process& me = detail::require_process("gen_server::start");
  const monitor_ref ref{detail::make_ref(me.home()->owner())};
  task<void> frame = detail::make_process_frame(&detail::gs_server<M>::template main<A...>,
                                                from<detail::init_ack>{me.self(), ref.value()}, o.name,
                                                o.statistics, o.link ? me.self() : pid{}, std::move(args)...);
  result<pid> spawned = detail::spawn_server(me, o, ref, std::move(frame));
  if (!spawned)
    co_return std::move(spawned).error();
  detail::call_awaiter<detail::init_ack> ack(me, ref, spawned.value(), o.init_timeout);
  result<pid> r = detail::started_server(spawned.value(), co_await ack);
  if (!r)
    co_return std::move(r).error();
  co_return server_ref<M>(r.value());
}

/// Starts a server of module M (gen_server:start/3).
template <class M, class... A>
task<result<server_ref<M>>> start(A... args) {
  return start_opt<M>(start_options{}, std::move(args)...);
}

/// Starts a server of module M linked to the caller (gen_server:start_link/3).
template <class M, class... A>
task<result<server_ref<M>>> start_link(A... args) {
  return start_opt<M>(start_options{.link = true}, std::move(args)...);
}

/// The default time a call waits for its reply (OTP's 5000 ms).
inline constexpr std::chrono::milliseconds default_call_timeout{5000};

/// Calls the server `to` of module M with `request` and waits for the
/// reply (gen_server:call/3). `co_await` the result: the reply, or an
/// error: `noproc` (no such server; nothing was sent), `exited` (it died
/// before replying; error::reason is why), `timeout` (a reply that comes
/// later is dropped), `calling_self`, `bad_request` (the server is of
/// another module: it refused the request at once and stays up).
template <class M, class Req>
auto call(const destination& to, Req&& request, otp::timeout t = default_call_timeout) {
  using R = detail::call_reply_t<M, std::decay_t<Req>>;
  static_assert(detail::call_check<M, std::decay_t<Req>>::ok);
  if constexpr (detail::call_check<M, std::decay_t<Req>>::ok) {
    auto target = to.resolve(detail::calling_node("gen_server::call"));
    if (!target)
      return detail::call_awaiter<R>(std::move(target).error());
    return detail::call_process<R>(target.value(), t, [&](const from<R>& f) {
      using body = detail::call_body<M, std::decay_t<Req>>;
      return detail::make_envelope<M>(body{{f.caller(), f.tag()}, std::forward<Req>(request)});
    });
  }
}

/// Calls the server `s` (its module deduced).
template <class M, class Req>
auto call(const server_ref<M>& s, Req&& request, otp::timeout t = default_call_timeout) {
  return call<M>(destination(s.pid()), std::forward<Req>(request), t);
}

/// Sends `request` to the server `to` of module M without waiting
/// (gen_server:cast/2). Like OTP's, it always succeeds: a request to a
/// server that is not there is dropped, and so is one that a server of
/// another module refuses (it logs a `bad_request` report).
template <class M, class Req>
void cast(const destination& to, Req&& request) {
  static_assert(detail::cast_check<M, std::decay_t<Req>>::ok);
  if constexpr (detail::cast_check<M, std::decay_t<Req>>::ok) {
    auto target = to.resolve(detail::calling_node("gen_server::cast"));
    if (!target)
      return;
    using body = detail::cast_body<M, std::decay_t<Req>>;
    detail::deliver(target.value(), detail::make_envelope<M>(body{std::forward<Req>(request)}));
  }
}

/// Casts to the server `s` (its module deduced). Safe from any thread.
template <class M, class Req>
void cast(const server_ref<M>& s, Req&& request) {
  static_assert(detail::cast_check<M, std::decay_t<Req>>::ok);
  if constexpr (detail::cast_check<M, std::decay_t<Req>>::ok) {
    using body = detail::cast_body<M, std::decay_t<Req>>;
    detail::deliver(s.pid(), detail::make_envelope<M>(body{std::forward<Req>(request)}));
  }
}

/// Stops the server `to` with `why` and waits until it is gone
/// (gen_server:stop/3): terminate runs, then the server exits. Fails with
/// `noproc`, `timeout`, or `exited` if it exited with another reason.
task<result<void>> stop(destination to, exit_reason why = exit_reason::normal(), otp::timeout t = otp::infinity);

/// Returns a copy of the state of the server `to` of module M (sys:get_state/1).
template <class M>
  requires std::copy_constructible<M>
auto get_state(const destination& to, otp::timeout t = default_call_timeout) {
  auto target = to.resolve(detail::calling_node("gen_server::get_state"));
  if (!target)
    return detail::call_awaiter<M>(std::move(target).error());
  return detail::call_process<M>(target.value(), t, [](const from<M>& f) {
    return detail::make_envelope<M>(detail::get_state_body<M>{{f.caller(), f.tag()}});
  });
}

/// Returns the state of the server `s` (its module deduced).
template <class M>
auto get_state(const server_ref<M>& s, otp::timeout t = default_call_timeout) {
  return get_state<M>(destination(s.pid()), t);
}

/// Returns the counters of the server `to` (sys:statistics/2).
detail::call_awaiter<server_statistics> statistics(const destination& to,
                                                   otp::timeout t = default_call_timeout);

} // namespace gen_server

/// Returns whether `M` can serve as a gen_server module.
template <class M>
concept gen_server_module = std::is_class_v<M> && std::is_destructible_v<M>;

} // namespace otp
