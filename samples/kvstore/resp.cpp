// SPDX-License-Identifier: Apache-2.0
#include "resp.hpp"

#include <charconv>

namespace kv {

void request_parser::feed(const char* data, std::size_t n) {
  // Drop what was parsed once it is most of the buffer: pipelined input
  // does not grow the buffer without bound.
  if (pos_ > 0 && pos_ >= buf_.size() / 2) {
    buf_.erase(0, pos_);
    pos_ = 0;
  }
  buf_.append(data, n);
}

request_parser::status request_parser::next(std::vector<std::string>& argv, std::string& message) {
  for (;;) {
    argv.clear();
    if (pos_ >= buf_.size())
      return status::need_more;
    const status s = buf_[pos_] == '*' ? parse_multibulk(argv, message) : parse_inline(argv, message);
    // Empty commands (`*0`, blank lines) are skipped, as Redis does.
    if (s != status::command || !argv.empty())
      return s;
  }
}

namespace {

// The position of "\r\n" at or after `from`, or npos.
std::size_t find_crlf(const std::string& b, std::size_t from) {
  const std::size_t at = b.find("\r\n", from);
  return at;
}

} // namespace

request_parser::status request_parser::parse_multibulk(std::vector<std::string>& argv, std::string& message) {
  std::size_t p = pos_;
  const std::size_t eol = find_crlf(buf_, p);
  if (eol == std::string::npos) {
    if (buf_.size() - p > max_inline_len) {
      message = "ERR Protocol error: too big mbulk count string";
      return status::error;
    }
    return status::need_more;
  }
  const auto count = to_int64(std::string_view(buf_).substr(p + 1, eol - p - 1));
  if (!count || *count > max_multibulk_len) {
    message = "ERR Protocol error: invalid multibulk length";
    return status::error;
  }
  p = eol + 2;
  std::vector<std::string> args;
  for (std::int64_t i = 0; i < *count; ++i) {
    if (p >= buf_.size())
      return status::need_more;
    if (buf_[p] != '$') {
      message = std::string("ERR Protocol error: expected '$', got '") + buf_[p] + "'";
      return status::error;
    }
    const std::size_t line_end = find_crlf(buf_, p);
    if (line_end == std::string::npos) {
      if (buf_.size() - p > max_inline_len) {
        message = "ERR Protocol error: too big bulk count string";
        return status::error;
      }
      return status::need_more;
    }
    const auto len = to_int64(std::string_view(buf_).substr(p + 1, line_end - p - 1));
    if (!len || *len < 0 || *len > max_bulk_len) {
      message = "ERR Protocol error: invalid bulk length";
      return status::error;
    }
    p = line_end + 2;
    const auto n = static_cast<std::size_t>(*len);
    if (buf_.size() - p < n + 2)
      return status::need_more;
    if (buf_[p + n] != '\r' || buf_[p + n + 1] != '\n') {
      message = "ERR Protocol error: bulk string is not followed by CRLF";
      return status::error;
    }
    args.emplace_back(buf_, p, n);
    p += n + 2;
  }
  pos_ = p;
  argv = std::move(args);
  return status::command;
}

request_parser::status request_parser::parse_inline(std::vector<std::string>& argv, std::string& message) {
  const std::size_t nl = buf_.find('\n', pos_);
  if (nl == std::string::npos) {
    if (buf_.size() - pos_ > max_inline_len) {
      message = "ERR Protocol error: too big inline request";
      return status::error;
    }
    return status::need_more;
  }
  std::size_t end = nl;
  if (end > pos_ && buf_[end - 1] == '\r')
    --end;
  std::size_t i = pos_;
  while (i < end) {
    while (i < end && (buf_[i] == ' ' || buf_[i] == '\t'))
      ++i;
    std::size_t j = i;
    while (j < end && buf_[j] != ' ' && buf_[j] != '\t')
      ++j;
    if (j > i)
      argv.emplace_back(buf_, i, j - i);
    i = j;
  }
  pos_ = nl + 1;
  return status::command;
}

void simple(std::string& out, std::string_view s) {
  out += '+';
  out += s;
  out += "\r\n";
}

void error(std::string& out, std::string_view s) {
  out += '-';
  out += s;
  out += "\r\n";
}

void integer(std::string& out, std::int64_t n) {
  out += ':';
  out += std::to_string(n);
  out += "\r\n";
}

void bulk(std::string& out, std::string_view s) {
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

bool glob_match(std::string_view p, std::string_view s) {
  while (!p.empty()) {
    switch (p[0]) {
      case '*': {
        while (p.size() > 1 && p[1] == '*')
          p.remove_prefix(1);
        if (p.size() == 1)
          return true;
        for (std::size_t i = 0; i <= s.size(); ++i)
          if (glob_match(p.substr(1), s.substr(i)))
            return true;
        return false;
      }
      case '?':
        if (s.empty())
          return false;
        s.remove_prefix(1);
        p.remove_prefix(1);
        break;
      case '[': {
        if (s.empty())
          return false;
        std::size_t i = 1;
        const bool negate = i < p.size() && p[i] == '^';
        if (negate)
          ++i;
        bool matched = false;
        while (i < p.size() && p[i] != ']') {
          if (p[i] == '\\' && i + 1 < p.size()) {
            matched = matched || p[i + 1] == s[0];
            i += 2;
          } else if (i + 2 < p.size() && p[i + 1] == '-' && p[i + 2] != ']') {
            matched = matched || (s[0] >= p[i] && s[0] <= p[i + 2]);
            i += 3;
          } else {
            matched = matched || p[i] == s[0];
            ++i;
          }
        }
        if (matched == negate)
          return false;
        p.remove_prefix(i < p.size() ? i + 1 : i);
        s.remove_prefix(1);
        break;
      }
      case '\\':
        if (p.size() > 1)
          p.remove_prefix(1);
        [[fallthrough]];
      default:
        if (s.empty() || s[0] != p[0])
          return false;
        s.remove_prefix(1);
        p.remove_prefix(1);
    }
  }
  return s.empty();
}

} // namespace kv
