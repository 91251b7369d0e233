// SPDX-License-Identifier: Apache-2.0
// samples/kvstore/resp.hpp - the Redis protocol (RESP2): an incremental
// request parser that handles pipelining, and reply encoders.
#pragma once

#include <cstddef>
#include <cstdint>
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
/// every read (the arguments parsed so far are kept).
class request_parser {
public:
  enum class status { need_more, command, error };

  /// Appends received bytes.
  void feed(const char* data, std::size_t n);

  /// Takes the next complete command into `argv`. On `error`, `message` is
  /// Redis's protocol error text; the connection must then be closed.
  status next(std::vector<std::string>& argv, std::string& message);

  /// Returns the input held for commands not yet complete: the bytes not yet
  /// parsed, plus the arguments parsed so far of a partial command (what
  /// --max-query-buffer bounds).
  [[nodiscard]] std::size_t buffered() const noexcept { return buf_.size() - pos_ + partial_bytes_; }

private:
  status parse_inline(std::vector<std::string>& argv, std::string& message);

  std::string buf_;
  std::size_t pos_ = 0;
  // The array being parsed: elements still to come (-1: none), the next
  // bulk string's length once its header is read (-1: not read), the
  // elements so far and the bytes they took.
  std::int64_t remaining_ = -1;
  std::int64_t bulk_len_ = -1;
  std::vector<std::string> args_;
  std::size_t partial_bytes_ = 0;
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

/// Encodes a command as a RESP array (the append-only log uses it).
void command(std::string& out, const std::vector<std::string>& argv);

/// Parses a whole decimal int64 (Redis's string2ll): no spaces, no '+'.
[[nodiscard]] std::optional<std::int64_t> to_int64(std::string_view s);

/// Redis's glob match as KEYS uses it: stringmatchlen's semantics (`*`, `?`,
/// `[abc]`, `[^a-z]`, `[z-a]`, `\x`, and its treatment of unterminated
/// classes), plus KEYS's rule that the pattern `*` alone matches every key,
/// the empty one too. Time O(pattern * key), not exponential in the stars.
[[nodiscard]] bool glob_match(std::string_view pattern, std::string_view s);

} // namespace kv
