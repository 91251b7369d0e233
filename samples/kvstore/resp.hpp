// SPDX-License-Identifier: Apache-2.0
// samples/kvstore/resp.hpp - the Redis protocol (RESP2): an incremental
// request parser that handles pipelining, and reply encoders.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kv {

/// Limits as Redis's defaults: a bulk string of at most 512 MB
/// (proto-max-bulk-len), an array of at most 1M elements, an inline request
/// line of at most 64 KB, and 1 GB of input buffered for one client
/// (client-query-buffer-limit; the connection is closed past it).
inline constexpr std::int64_t max_bulk_len = 512LL * 1024 * 1024;
inline constexpr std::int64_t max_multibulk_len = 1024 * 1024;
inline constexpr std::size_t max_inline_len = 64 * 1024;
inline constexpr std::size_t default_max_query_buffer = 1024ULL * 1024 * 1024;

/// Splits a byte stream into commands: RESP arrays of bulk strings, or inline
/// commands (a line of words, as telnet sends). Resumable: a command that
/// arrives in many reads is parsed once, not again from its first byte on
/// every read. The arguments are views into the parser's own buffer (no copy
/// and no allocation per command); they stay valid until the next prepare()
/// or feed(), so a connection executes what one read brought before reading
/// again.
class request_parser {
public:
  enum class status { need_more, command, error };

  request_parser() = default;
  request_parser(const request_parser&) = delete;
  request_parser& operator=(const request_parser&) = delete;

  /// Room for at least `n` more bytes: read into it, then commit() what
  /// came. Invalidates the views given by next().
  [[nodiscard]] char* prepare(std::size_t n);
  [[nodiscard]] std::size_t room() const noexcept { return cap_ - size_; }
  void commit(std::size_t n) noexcept { size_ += n; }

  /// Appends received bytes (prepare, copy, commit).
  void feed(const char* data, std::size_t n);

  /// Takes the next complete command's arguments into `argv`. On `error`,
  /// `message` is Redis's protocol error text; the connection must then be
  /// closed.
  status next(std::vector<std::string_view>& argv, std::string& message);

  /// Returns the input held for commands not yet complete (what
  /// --max-query-buffer bounds).
  [[nodiscard]] std::size_t buffered() const noexcept { return size_ - start_; }

  /// Once every command has been taken: forgets the bytes, and gives back a
  /// buffer that a large command grew, so that an idle client holds little.
  void release_consumed() noexcept;

  /// Bytes the buffer holds room for (tests: what a large command leaves).
  [[nodiscard]] std::size_t capacity() const noexcept { return cap_; }

private:
  status parse_inline(std::vector<std::string_view>& argv, std::string& message);
  void reserve(std::size_t total);

  std::unique_ptr<char[]> data_; // not a std::string: growing it does not zero the room a read fills
  std::size_t size_ = 0;
  std::size_t cap_ = 0;
  std::size_t pos_ = 0;   // parsed up to here
  std::size_t start_ = 0; // where the command being parsed starts (what must be kept)
  // The array being parsed: elements still to come (-1: none), the next
  // bulk string's length once its header is read (-1: not read), and where
  // the elements parsed so far are in the buffer.
  std::int64_t remaining_ = -1;
  std::int64_t bulk_len_ = -1;
  std::vector<std::pair<std::size_t, std::size_t>> args_;
};

// Reply encoders: each appends one RESP2 value to `out`.
void simple(std::string& out, std::string_view s);
/// An error reply; CR and LF become spaces (as Redis does), so text that
/// quotes the client cannot inject replies.
void error(std::string& out, std::string_view s);
void integer(std::string& out, std::int64_t n);
void bulk(std::string& out, std::string_view s);
void null_bulk(std::string& out);
void array_header(std::string& out, std::size_t n);

/// Encodes a command as a RESP array (the parser's fuzzer re-encodes with it).
void command(std::string& out, const std::vector<std::string>& argv);


/// Parses a whole decimal int64 (Redis's string2ll): no spaces, no '+'.
[[nodiscard]] std::optional<std::int64_t> to_int64(std::string_view s);

/// Redis's glob match as KEYS uses it: stringmatchlen's semantics (`*`, `?`,
/// `[abc]`, `[^a-z]`, `[z-a]`, `\x`, and its treatment of unterminated
/// classes), plus KEYS's rule that the pattern `*` alone matches every key,
/// the empty one too. Time O(pattern * key), not exponential in the stars.
[[nodiscard]] bool glob_match(std::string_view pattern, std::string_view s);

} // namespace kv
