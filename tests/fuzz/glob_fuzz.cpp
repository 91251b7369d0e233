// SPDX-License-Identifier: Apache-2.0
// libFuzzer harness for the kvstore's KEYS glob (samples/kvstore/resp.cpp):
// glob_match must agree with Redis 7.0's stringmatchlen, ported here as it
// is in util.c (recursive, on NUL-terminated strings), on every pattern and
// key; and it must stay fast on long ones (the fuzzer's -timeout). Built and
// run by tests/fuzz/run.sh.
#include "resp.hpp"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace {

// Redis's stringmatchlen_impl, case-sensitive; reads past the end see the
// NUL that std::string keeps after its bytes, as Redis's sds strings do.
int reference(const char* pattern, int patternLen, const char* string, int stringLen, int* skipLongerMatches) {
  while (patternLen && stringLen) {
    switch (pattern[0]) {
      case '*':
        while (patternLen && pattern[1] == '*') {
          pattern++;
          patternLen--;
        }
        if (patternLen == 1)
          return 1;
        while (stringLen) {
          if (reference(pattern + 1, patternLen - 1, string, stringLen, skipLongerMatches))
            return 1;
          if (*skipLongerMatches)
            return 0;
          string++;
          stringLen--;
        }
        *skipLongerMatches = 1;
        return 0;
      case '?':
        string++;
        stringLen--;
        break;
      case '[': {
        pattern++;
        patternLen--;
        const bool negate = pattern[0] == '^';
        if (negate) {
          pattern++;
          patternLen--;
        }
        bool match = false;
        for (;;) {
          if (pattern[0] == '\\' && patternLen >= 2) {
            pattern++;
            patternLen--;
            if (pattern[0] == string[0])
              match = true;
          } else if (pattern[0] == ']') {
            break;
          } else if (patternLen == 0) {
            pattern--;
            patternLen++;
            break;
          } else if (patternLen >= 3 && pattern[1] == '-') {
            int start = static_cast<signed char>(pattern[0]);
            int end = static_cast<signed char>(pattern[2]);
            const int c = static_cast<signed char>(string[0]);
            if (start > end) {
              const int t = start;
              start = end;
              end = t;
            }
            pattern += 2;
            patternLen -= 2;
            if (c >= start && c <= end)
              match = true;
          } else if (pattern[0] == string[0]) {
            match = true;
          }
          pattern++;
          patternLen--;
        }
        if (negate)
          match = !match;
        if (!match)
          return 0;
        string++;
        stringLen--;
        break;
      }
      case '\\':
        if (patternLen >= 2) {
          pattern++;
          patternLen--;
        }
        [[fallthrough]];
      default:
        if (pattern[0] != string[0])
          return 0;
        string++;
        stringLen--;
        break;
    }
    pattern++;
    patternLen--;
    if (stringLen == 0) {
      while (*pattern == '*') {
        pattern++;
        patternLen--;
      }
      break;
    }
  }
  return patternLen == 0 && stringLen == 0 ? 1 : 0;
}

bool redis_keys_match(const std::string& p, const std::string& s) {
  if (p == "*")
    return true; // KEYS's allkeys shortcut
  int skip = 0;
  return reference(p.c_str(), static_cast<int>(p.size()), s.c_str(), static_cast<int>(s.size()), &skip) != 0;
}

} // namespace

// The first byte splits the rest into the pattern and the key.
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1)
    return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  const std::size_t cut = rest.empty() ? 0 : data[0] % (rest.size() + 1);
  const std::string pattern(rest.substr(0, cut));
  const std::string key(rest.substr(cut));
  const bool got = kv::glob_match(pattern, key);
  // The reference recurses at each star; it is polynomial with Redis's
  // skipLongerMatches, but only short inputs are compared to keep runs fast.
  if (pattern.size() <= 256 && key.size() <= 256 && got != redis_keys_match(pattern, key)) {
    std::fprintf(stderr, "glob_match disagrees with Redis (got %d) on pattern '%s' key '%s' (%zu, %zu bytes)\n",
                 got ? 1 : 0, pattern.c_str(), key.c_str(), pattern.size(), key.size());
    std::abort();
  }
  return 0;
}
