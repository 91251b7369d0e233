// SPDX-License-Identifier: Apache-2.0
// libFuzzer harness for the kvstore's log replay (samples/kvstore/shard.cpp):
// any bytes as a log file must be loaded or reported as damage (or a torn
// last record), never crash, and the offsets it reports must be consistent.
#include "shard.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <unordered_map>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const int fd = ::memfd_create("replay_fuzz", 0);
  if (fd < 0 || ::ftruncate(fd, 0) != 0)
    std::abort();
  for (std::size_t done = 0; done < size;) {
    const ssize_t n = ::pwrite(fd, data + done, size - done, static_cast<off_t>(done));
    if (n <= 0)
      std::abort();
    done += static_cast<std::size_t>(n);
  }
  std::unordered_map<std::string, std::string> keys;
  const kv::aof::read_result r = kv::aof::read(fd, [&](std::vector<std::string>& argv) {
    if (argv.size() < 2 || (argv[0] != "SET" && argv[0] != "DEL"))
      std::abort(); // only checked records reach apply
    if (argv[0] == "SET")
      keys[argv[1]] = argv[2];
    else
      keys.erase(argv[1]);
  });
  if (r.size != size || r.valid_end > size)
    std::abort();
  if (r.damage_at && (*r.damage_at < r.valid_end || *r.damage_at >= size || r.damage.empty()))
    std::abort();
  if (!r.damage_at && !r.torn_tail && r.valid_end != size)
    std::abort(); // neither damage nor a torn tail: everything was read
  if (r.damage_at && r.torn_tail)
    std::abort();
  return 0;
}
