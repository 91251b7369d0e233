// SPDX-License-Identifier: Apache-2.0
// samples/kvstore/server.hpp - the TCP side: an acceptor process, and one
// process per connection that parses RESP and calls the shards.
#pragma once

#include "resp.hpp"

#include "otp/otp.hpp"
#include "supervisor/config.hpp"
#include "supervisor/dynamic_supervisor.hpp"

#include <string>

namespace kv {

/// A connection's "args" (the dynamic supervisor's template in app.json).
struct connection_config {
  bool admin = false; ///< accept DEBUG CRASH <shard>
  /// The most input held for one client's unfinished commands, in bytes
  /// (Redis's client-query-buffer-limit); past it the client is closed.
  std::size_t max_query_buffer = default_max_query_buffer;
};

/// The acceptor's "args".
struct acceptor_config {
  std::string host = "127.0.0.1";
  int port = 6380;
};

void from_json(const otp::json& j, connection_config& c);
void from_json(const otp::json& j, acceptor_config& c);

/// The dynamic supervisor of connections (main.cpp's template,
/// `start_table::dynamic<connection_config, int>`): a child per socket fd.
using connections_ref = otp::dynamic_supervisor_ref<int>;

/// Serves one client on the socket `fd` until it disconnects or sends QUIT.
otp::task<void> connection(int fd, connection_config config);

/// Accepts clients and starts a connection process for each under the
/// dynamic supervisor registered as "connections". A client over its
/// max_children gets Redis's "max number of clients reached" error; accept
/// errors (out of descriptors) are waited out, not crashed on.
otp::task<void> acceptor(acceptor_config config);

} // namespace kv
