// SPDX-License-Identifier: Apache-2.0
#include "resp.hpp"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <utility>

namespace kv {

namespace {
constexpr std::size_t initial_buffer = 4096;
// A buffer grown past this by one large command is given back once it is consumed.
constexpr std::size_t keep_buffer = 64 * 1024;

// A header line in its common form, `0` or `[1-9][0-9]*` then CRLF, read in
// one pass from `at` (just after its '*' or '$'): its value, and where the
// next line starts. Anything else (a sign, leading zeros, more than 18
// digits, a line not all here yet) returns false, and the general path,
// which looks for the line's end first, gives Redis's answer for it.
bool quick_header(std::string_view b, std::size_t at, std::int64_t& value, std::size_t& next) noexcept {
  std::size_t i = at;
  std::int64_t v = 0;
  for (const std::size_t stop = std::min(b.size(), at + 18); i < stop && b[i] >= '0' && b[i] <= '9'; ++i)
    v = v * 10 + (b[i] - '0');
  const std::size_t digits = i - at;
  if (digits == 0 || (digits > 1 && b[at] == '0') || i + 1 >= b.size() || b[i] != '\r' || b[i + 1] != '\n')
    return false;
  value = v;
  next = i + 2;
  return true;
}
} // namespace

void request_parser::reserve(std::size_t total) {
  if (total <= cap_)
    return;
  auto bigger = std::make_unique_for_overwrite<char[]>(total);
  if (size_ > 0)
    std::memcpy(bigger.get(), data_.get(), size_);
  data_ = std::move(bigger);
  cap_ = total;
}

char* request_parser::prepare(std::size_t n) {
  // Drop the commands already taken; what is kept is the command being
  // parsed (its bytes stay in the buffer, its arguments are offsets).
  if (start_ > 0) {
    std::memmove(data_.get(), data_.get() + start_, size_ - start_);
    for (auto& a : args_)
      a.first -= start_;
    size_ -= start_;
    pos_ -= start_;
    start_ = 0;
  }
  std::size_t want = size_ + n;
  // A bulk string of known length gets its whole room at once, instead of
  // doubling there (which would copy it and hold twice its size).
  if (bulk_len_ > 0)
    want = std::max(want, pos_ + static_cast<std::size_t>(bulk_len_) + 2);
  if (want > cap_)
    reserve(std::max({want, 2 * cap_, initial_buffer}));
  return data_.get() + size_;
}

void request_parser::feed(const char* data, std::size_t n) {
  if (n == 0)
    return;
  std::memcpy(prepare(n), data, n);
  commit(n);
}

void request_parser::release_consumed() noexcept {
  if (start_ != size_)
    return;
  size_ = pos_ = start_ = 0;
  if (cap_ > keep_buffer) {
    data_.reset();
    cap_ = 0;
  }
}

request_parser::status request_parser::next(std::vector<std::string_view>& argv, std::string& message) {
  const std::string_view b(data_.get(), size_);
  for (;;) {
    argv.clear();
    if (remaining_ < 0) {
      start_ = pos_;
      if (pos_ >= b.size())
        return status::need_more;
      if (b[pos_] != '*') {
        const status s = parse_inline(argv, message);
        // Blank lines are skipped, as Redis does.
        if (s != status::command || !argv.empty())
          return s;
        continue;
      }
      std::int64_t count = 0;
      std::size_t after = 0;
      if (!quick_header(b, pos_ + 1, count, after)) {
        const std::size_t eol = b.find("\r\n", pos_);
        if (eol == std::string_view::npos) {
          if (b.size() - pos_ > max_inline_len) {
            message = "ERR Protocol error: too big mbulk count string";
            return status::error;
          }
          return status::need_more;
        }
        const auto c = to_int64(b.substr(pos_ + 1, eol - pos_ - 1));
        if (!c) {
          message = "ERR Protocol error: invalid multibulk length";
          return status::error;
        }
        count = *c;
        after = eol + 2;
      }
      if (count > max_multibulk_len) {
        message = "ERR Protocol error: invalid multibulk length";
        return status::error;
      }
      pos_ = after;
      if (count <= 0)
        continue; // `*0`, `*-1`: an empty command, skipped
      remaining_ = count;
      args_.clear();
    }
    while (remaining_ > 0) {
      if (bulk_len_ < 0) {
        std::int64_t len = 0;
        std::size_t after = 0;
        if (pos_ >= b.size() || b[pos_] != '$' || !quick_header(b, pos_ + 1, len, after)) {
          // As Redis: the header line must be complete before its '$' is checked.
          const std::size_t eol = b.find("\r\n", pos_);
          if (eol == std::string_view::npos) {
            if (b.size() - pos_ > max_inline_len) {
              message = "ERR Protocol error: too big bulk count string";
              return status::error;
            }
            return status::need_more;
          }
          if (b[pos_] != '$') {
            message = std::string("ERR Protocol error: expected '$', got '") + b[pos_] + "'";
            return status::error;
          }
          const auto l = to_int64(b.substr(pos_ + 1, eol - pos_ - 1));
          if (!l || *l < 0) {
            message = "ERR Protocol error: invalid bulk length";
            return status::error;
          }
          len = *l;
          after = eol + 2;
        }
        if (len > max_bulk_len) {
          message = "ERR Protocol error: invalid bulk length";
          return status::error;
        }
        pos_ = after;
        bulk_len_ = len;
      }
      const auto n = static_cast<std::size_t>(bulk_len_);
      if (b.size() - pos_ < n + 2)
        return status::need_more;
      if (b[pos_ + n] != '\r' || b[pos_ + n + 1] != '\n') {
        message = "ERR Protocol error: bulk string is not followed by CRLF";
        return status::error;
      }
      args_.emplace_back(pos_, n);
      pos_ += n + 2;
      bulk_len_ = -1;
      --remaining_;
    }
    remaining_ = -1;
    start_ = pos_;
    for (const auto& [off, len] : args_)
      argv.emplace_back(data_.get() + off, len); // in place: a view built on the stack and copied stalled the copy
    return status::command;
  }
}

request_parser::status request_parser::parse_inline(std::vector<std::string_view>& argv, std::string& message) {
  const std::string_view b(data_.get(), size_);
  const std::size_t nl = b.find('\n', pos_);
  if (nl == std::string_view::npos) {
    if (b.size() - pos_ > max_inline_len) {
      message = "ERR Protocol error: too big inline request";
      return status::error;
    }
    return status::need_more;
  }
  std::size_t end = nl;
  if (end > pos_ && b[end - 1] == '\r')
    --end;
  std::size_t i = pos_;
  while (i < end) {
    while (i < end && (b[i] == ' ' || b[i] == '\t'))
      ++i;
    std::size_t j = i;
    while (j < end && b[j] != ' ' && b[j] != '\t')
      ++j;
    if (j > i)
      argv.push_back(b.substr(i, j - i));
    i = j;
  }
  pos_ = nl + 1;
  start_ = pos_;
  return status::command;
}

void simple(std::string& out, std::string_view s) {
  out += '+';
  out += s;
  out += "\r\n";
}

void error(std::string& out, std::string_view s) {
  out += '-';
  for (const char c : s)
    out += c == '\r' || c == '\n' ? ' ' : c;
  out += "\r\n";
}

void integer(std::string& out, std::int64_t n) {
  out += ':';
  out += std::to_string(n);
  out += "\r\n";
}

void bulk(std::string& out, std::string_view s) {
  // A large value gets its room at once: growing by doubling would copy it
  // and, for a moment, hold it three times.
  if (const std::size_t need = out.size() + s.size() + 32; s.size() > 4096 && need > out.capacity())
    out.reserve(std::max(need, 2 * out.capacity()));
  out += '$';
  out += std::to_string(s.size());
  out += "\r\n";
  out += s;
  out += "\r\n";
}

void null_bulk(std::string& out) { out += "$-1\r\n"; }

void array_header(std::string& out, std::size_t n) {
  out += '*';
  out += std::to_string(n);
  out += "\r\n";
}

void command(std::string& out, const std::vector<std::string>& argv) {
  array_header(out, argv.size());
  for (const auto& a : argv)
    bulk(out, a);
}

std::optional<std::int64_t> to_int64(std::string_view s) {
  if (s.empty() || s.size() > 20 || s[0] == '+')
    return std::nullopt;
  std::int64_t v = 0;
  const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || ptr != s.data() + s.size())
    return std::nullopt;
  // "-0" and leading zeros are not canonical integers in Redis.
  if ((s.size() > 1 && s[0] == '0') || (s.size() > 1 && s[0] == '-' && s[1] == '0'))
    return std::nullopt;
  return v;
}

namespace {

// Matches one element of the pattern at `p[pi]` (not a star) against the
// byte `c`, and moves `pi` past it. This follows Redis's stringmatchlen
// byte for byte, quirks included: reads past the end see a NUL (Redis's
// strings are NUL-terminated), a class with no `]` ends with the pattern,
// `[z-a]` is `[a-z]`, `[a-]` is the range from 'a' to ']', and range bounds
// compare as signed chars (x86 Redis).
bool match_one(std::string_view p, std::size_t& pi, char c) {
  auto at = [p](std::size_t i) { return i < p.size() ? p[i] : '\0'; };
  switch (p[pi]) {
    case '?':
      ++pi;
      return true;
    case '[': {
      std::size_t i = pi + 1;
      const bool negate = at(i) == '^';
      if (negate)
        ++i;
      bool matched = false;
      for (;;) {
        const std::size_t left = p.size() - i;
        if (at(i) == '\\' && left >= 2) {
          ++i;
          matched = matched || p[i] == c;
        } else if (at(i) == ']') {
          break;
        } else if (left == 0) {
          --i; // the pattern ended inside the class
          break;
        } else if (left >= 3 && p[i + 1] == '-') {
          int lo = static_cast<signed char>(p[i]);
          int hi = static_cast<signed char>(p[i + 2]);
          if (lo > hi)
            std::swap(lo, hi);
          const int v = static_cast<signed char>(c);
          matched = matched || (v >= lo && v <= hi);
          i += 2;
        } else {
          matched = matched || p[i] == c;
        }
        ++i;
      }
      pi = i + 1;
      return matched != negate;
    }
    case '\\':
      if (p.size() - pi >= 2)
        ++pi;
      [[fallthrough]];
    default:
      return p[pi++] == c;
  }
}

} // namespace

// Each element but `*` matches exactly one byte, so the classic
// backtracking to the last star is exact: a later star's match never needs
// an earlier star to take more, and a key exhausted before the pattern
// means no match at all (Redis's skipLongerMatches).
bool glob_match(std::string_view p, std::string_view s) {
  if (p == "*")
    return true; // KEYS's shortcut, which also matches the empty key
  if (s.empty())
    return p.empty(); // stringmatchlen matches nothing, not even `*`, against ""
  constexpr std::size_t none = std::string_view::npos;
  std::size_t pi = 0;
  std::size_t si = 0;
  std::size_t star_p = none; // the pattern just after the last star
  std::size_t star_s = 0;    // where the text after that star starts
  for (;;) {
    if (pi < p.size() && p[pi] == '*') {
      while (pi + 1 < p.size() && p[pi + 1] == '*')
        ++pi;
      if (pi + 1 == p.size())
        return true;
      star_p = ++pi;
      star_s = si;
      continue;
    }
    if (pi < p.size() && match_one(p, pi, s[si])) {
      if (++si == s.size()) {
        while (pi < p.size() && p[pi] == '*')
          ++pi;
        return pi == p.size();
      }
      continue;
    }
    // A mismatch, or the pattern ended before the key: the last star takes
    // one more byte, while at least one is left after it.
    if (star_p == none || ++star_s == s.size())
      return false;
    pi = star_p;
    si = star_s;
  }
}

} // namespace kv
