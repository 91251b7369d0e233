// SPDX-License-Identifier: Apache-2.0
// Compiles Asio's non-template code once (ASIO_SEPARATE_COMPILATION).
#include <asio/impl/src.hpp>
