// SPDX-License-Identifier: Apache-2.0
// otp/detail/item.hpp - what travels to a process: messages and signals.
#pragma once

#include "otp/detail/pool.hpp"
#include "otp/exit_reason.hpp"
#include "otp/pid.hpp"

#include <atomic>
#include <cstdint>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>

namespace otp {

/// The message a trapping process receives for an exit signal ('EXIT').
struct exit_msg {
  pid from;
  exit_reason reason;
};

/// The message a monitor delivers when its target exits ('DOWN').
///
/// `reason` is `noproc` when the target did not exist at monitor time.
struct down_msg {
  monitor_ref ref;
  pid from;
  exit_reason reason;
};

} // namespace otp

namespace otp::detail {

// A message or a signal takes whole cache lines of the pool. It is written
// on one thread and read and freed on another, and its block is reused
// where it was freed, so a thread's list holds blocks of other threads'
// slabs: two blocks sharing a line were then in use on two schedulers at
// once, which wrote the line in turn (docs/design.md, "Blocks go home").
inline constexpr std::size_t item_line_bytes = 64;
[[nodiscard]] constexpr std::size_t item_block_bytes(std::size_t n) noexcept {
  return (n + item_line_bytes - 1) / item_line_bytes * item_line_bytes;
}

// Storage for an item of type M: the pool serves up to its 16-byte
// alignment; a type aligned more strictly gets an aligned allocation.
template <class M>
[[nodiscard]] void* allocate_item_storage() {
  if constexpr (alignof(M) > pool_granularity)
    return ::operator new(sizeof(M), std::align_val_t{alignof(M)});
  else
    return pool_allocate(item_block_bytes(sizeof(M)));
}
template <class M>
void free_item_storage(void* mem) noexcept {
  if constexpr (alignof(M) > pool_granularity)
    ::operator delete(mem, std::align_val_t{alignof(M)});
  else
    pool_deallocate_here(mem, item_block_bytes(sizeof(M)));
}

// The first two kinds are messages (struct message); the rest are signals.
enum class item_kind : std::uint8_t {
  message,
  reply,     // a message for the caller's reply slot (call_tag), never the mailbox
  exit,      // exit signal; `flag` = it came through a link
  link,      // `from` linked to us
  unlink,    // `from` removed its link to us; `ref` is the unlink's id, acked
  unlink_ack, // we removed our link to `from`: the unlink `ref` took effect
  monitor,   // `from` monitors us under `ref`
  demonitor, // the monitor `ref` was removed by its owner
  down,      // the target of our monitor `ref` exited with `reason`
  info,      // `from` asks for process_info; `ref` is the reply tag
  hook,      // install `hook`, run once when the process exits
};

// Intrusive node of every queue a process has (inbox, signals, mailbox).
struct item {
  item* next = nullptr;
  item_kind kind;
  std::uint8_t flags = 0; // for the layers above (item_flag_*); in the padding
  explicit item(item_kind k) noexcept : kind(k) {}
};

// A gen_server request, whatever its module: lets a server spot a request
// meant for another module without slowing its own requests' match.
inline constexpr std::uint8_t item_flag_request = 1;

struct message;

// What a message's header points at: one per kind of message (a payload
// type's messages, its replies, a gen_server module's requests). Its
// address is the type tag a selective receive compares, and it knows how
// to free the message, so a header holds one pointer for both: a message
// with an 8-byte payload is 32 bytes, not 48.
struct message_type {
  void (*destroy)(message*) noexcept;
};
using type_tag = const message_type*;

template <class T>
struct message_of;
template <class T>
[[nodiscard]] constexpr type_tag tag_of() noexcept;

struct message : item {
  type_tag type;
  explicit message(type_tag t) noexcept : item(item_kind::message), type(t) {}
  // Runs the payload's destructor and frees the block.
  void destroy() noexcept { type->destroy(this); }
};

template <class T>
struct message_of final : message {
  T value;

  template <class... A>
  explicit message_of(A&&... a)
    : message(tag_of<T>()), value(std::forward<A>(a)...) {}

  static void destroy_self(message* m) noexcept {
    auto* self = static_cast<message_of*>(m);
    self->~message_of();
    free_item_storage<message_of>(self);
  }
};

// One address per type, no RTTI: the tag of T's messages.
template <class T>
inline constexpr message_type message_type_v{&message_of<T>::destroy_self};
template <class T>
[[nodiscard]] constexpr type_tag tag_of() noexcept {
  return &message_type_v<T>;
}

// A reply to a call: delivered to the caller's one-shot slot if `tag` is
// the call it waits for, else dropped (OTP's alias, deactivated on timeout).
struct reply_message : message {
  std::uint64_t tag;
  reply_message(type_tag t, std::uint64_t call_tag) noexcept : message(t), tag(call_tag) {
    kind = item_kind::reply;
  }
};

template <class T>
struct reply_of;
template <class T>
[[nodiscard]] constexpr type_tag reply_tag_of() noexcept;

template <class T>
struct reply_of final : reply_message {
  T value;

  template <class... A>
  explicit reply_of(std::uint64_t call_tag, A&&... a)
    : reply_message(reply_tag_of<T>(), call_tag), value(std::forward<A>(a)...) {}

  static void destroy_self(message* m) noexcept {
    auto* self = static_cast<reply_of*>(m);
    self->~reply_of();
    free_item_storage<reply_of>(self);
  }
};

// The tag of T's replies: not T's messages' (the block's layout differs).
template <class T>
inline constexpr message_type reply_type_v{&reply_of<T>::destroy_self};
template <class T>
[[nodiscard]] constexpr type_tag reply_tag_of() noexcept {
  return &reply_type_v<T>;
}

template <class T, class... A>
[[nodiscard]] message* make_reply(std::uint64_t call_tag, A&&... a) {
  void* mem = allocate_item_storage<reply_of<T>>();
  try {
    return ::new (mem) reply_of<T>(call_tag, std::forward<A>(a)...);
  } catch (...) {
    free_item_storage<reply_of<T>>(mem);
    throw;
  }
}

template <class T>
[[nodiscard]] T& reply_payload(message* m) noexcept {
  return static_cast<reply_of<T>*>(m)->value;
}

[[nodiscard]] constexpr bool is_message(item_kind k) noexcept {
  return k == item_kind::message || k == item_kind::reply;
}

/// Owns a message taken out of a mailbox.
struct message_deleter {
  void operator()(message* m) const noexcept { m->destroy(); }
};
using message_ptr = std::unique_ptr<message, message_deleter>;

template <class T, class... A>
[[nodiscard]] message* make_message(A&&... a) {
  void* mem = allocate_item_storage<message_of<T>>();
  try {
    return ::new (mem) message_of<T>(std::forward<A>(a)...);
  } catch (...) {
    free_item_storage<message_of<T>>(mem);
    throw;
  }
}

template <class T>
[[nodiscard]] T& payload(message* m) noexcept {
  return static_cast<message_of<T>*>(m)->value;
}

// The header is the item's link and kind, and the type: a word-sized
// payload takes a 32-byte block (docs/design.md, "A message's header").
static_assert(sizeof(message_of<std::uint64_t>) == 32);

// Code of a layer above the runtime (the registry) to run once when a
// process exits, before its links and monitors are told; or at once if the
// process turns out to be gone already. `who` is the exited process.
struct exit_hook {
  void (*fn)(void* ctx, const pid& who) noexcept = nullptr;
  void* ctx = nullptr;
  void operator()(const pid& who) const noexcept { fn(ctx, who); }
};

struct signal : item {
  pid from;
  exit_reason reason;
  monitor_ref ref;
  exit_hook hook;
  bool flag = false;
  signal(item_kind k, pid f) noexcept : item(k), from(f) {}
};

[[nodiscard]] inline signal* make_signal(item_kind k, pid from) {
  return ::new (pool_allocate(item_block_bytes(sizeof(signal)))) signal(k, from);
}

inline void destroy_item(item* it) noexcept {
  if (is_message(it->kind)) {
    auto* m = static_cast<message*>(it);
    m->destroy();
  } else {
    auto* s = static_cast<signal*>(it);
    s->~signal();
    pool_deallocate_here(s, item_block_bytes(sizeof(signal)));
  }
}

// A FIFO of items owned by one thread.
struct item_list {
  item* head = nullptr;
  item* tail = nullptr;

  [[nodiscard]] bool empty() const noexcept { return head == nullptr; }
  void push_back(item* it) noexcept {
    it->next = nullptr;
    if (tail != nullptr)
      tail->next = it;
    else
      head = it;
    tail = it;
  }
  [[nodiscard]] item* take_all() noexcept {
    item* h = head;
    head = tail = nullptr;
    return h;
  }
};

// Takes every item of a LIFO stack pushed by other threads, in push order.
[[nodiscard]] inline item* take_fifo(std::atomic<item*>& stack) noexcept {
  // A load first: most stacks are empty, and a load costs no exclusive line.
  if (stack.load(std::memory_order_relaxed) == nullptr)
    return nullptr;
  item* lifo = stack.exchange(nullptr, std::memory_order_acq_rel);
  item* fifo = nullptr;
  while (lifo != nullptr) {
    item* next = lifo->next;
    lifo->next = fifo;
    fifo = lifo;
    lifo = next;
  }
  return fifo;
}

} // namespace otp::detail
