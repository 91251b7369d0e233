// SPDX-License-Identifier: Apache-2.0
// libFuzzer harness for the kvstore's RESP request parser
// (samples/kvstore/resp.cpp): whatever the bytes, and however they are split
// into reads, the parser yields the same commands (it is resumable: a read
// boundary changes nothing), each command survives re-encoding, and it never
// crashes, reads out of bounds or holds more than it was given. Built and run
// by tests/fuzz/run.sh.
#include "resp.hpp"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace {

struct outcome {
  std::vector<std::vector<std::string>> commands;
  bool failed = false;
};

void fail(const char* what) {
  std::fprintf(stderr, "resp_fuzz: %s\n", what);
  std::abort();
}

// Feeds `input` in pieces of the sizes `cuts` gives (cycled), parsing after each.
outcome parse(std::string_view input, std::string_view cuts) {
  outcome o;
  kv::request_parser p;
  std::vector<std::string_view> argv;
  std::string message;
  std::size_t at = 0;
  std::size_t k = 0;
  while (at < input.size() && !o.failed) {
    std::size_t n = input.size() - at;
    if (!cuts.empty())
      n = std::min<std::size_t>(n, 1 + static_cast<unsigned char>(cuts[k++ % cuts.size()]) % 64);
    p.feed(input.data() + at, n);
    at += n;
    for (;;) {
      const auto st = p.next(argv, message);
      if (st == kv::request_parser::status::need_more)
        break;
      if (st == kv::request_parser::status::error) {
        if (message.rfind("ERR Protocol error: ", 0) != 0)
          fail("an error that is not a protocol error");
        o.failed = true;
        break;
      }
      if (argv.empty())
        fail("an empty command");
      // The views are into the parser's buffer: copied before the next feed.
      o.commands.emplace_back(argv.begin(), argv.end());
    }
    if (!o.failed && p.buffered() > at)
      fail("the parser holds more bytes than it was given");
    p.release_consumed();
  }
  return o;
}

} // namespace

// The first byte says how many of the next bytes are read sizes.
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1)
    return 0;
  const std::string_view all(reinterpret_cast<const char*>(data + 1), size - 1);
  const std::size_t ncuts = std::min<std::size_t>(data[0] % 16, all.size());
  const std::string_view cuts = all.substr(0, ncuts);
  const std::string_view input = all.substr(ncuts);

  const outcome whole = parse(input, {});
  const outcome pieces = parse(input, cuts.empty() ? std::string_view("\x00", 1) : cuts);
  // The limits on lines without CRLF (64 KB) depend on how much has arrived,
  // as in Redis; inputs here are shorter, so the outcomes must be equal.
  if (input.size() < kv::max_inline_len && (whole.commands != pieces.commands || whole.failed != pieces.failed))
    fail("the commands depend on how the input was split into reads");

  // A command re-encoded as RESP parses back to itself.
  for (const auto& c : whole.commands) {
    std::string encoded;
    kv::command(encoded, c);
    const outcome again = parse(encoded, {});
    if (again.failed || again.commands.size() != 1 || again.commands[0] != c)
      fail("a command does not survive re-encoding");
  }
  return 0;
}
