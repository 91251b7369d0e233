# SPDX-License-Identifier: Apache-2.0
# The network side of samples/kvstore under hostile or heavy clients: running
# out of file descriptors, more clients than fit, expire times that overflow,
# KEYS patterns that used to take exponential time, huge commands, error
# replies that echoed raw client bytes, and the query buffer limit. Expected
# replies were taken from redis-server 7.0. Loopback only; every wait is
# bounded.
#
# usage: test_net.py KVSTORE_BINARY
import os
import random
import re
import shutil
import socket
import sys
import tempfile
import time

import kvtest
from kvtest import check, failures, resp

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from socket_probe import server_no_delay  # noqa: E402  (samples/socket_probe.py)

BIN = sys.argv[1]
SANITIZED = "--sanitized" in sys.argv[2:]  # RSS figures mean little under ASan or TSan


class Server(kvtest.Server):
    """kvstore on two schedulers; a stop must exit 0 (a sanitizer's report makes the code non-zero)."""

    def __init__(self, data, *extra, nofile=None):
        # Cores of its own even when the machine is busy (a test run beside
        # others): connections_spread counts where connections are placed.
        super().__init__(BIN, data, "--schedulers", "2", "--use-shared-cores", *extra, nofile=nofile)

    def stop(self):
        rc = super().stop()
        check("SIGTERM stops the server, exit code 0", rc == 0, "exit code %s; %s" % (rc, "".join(self.lines[-15:])))
        return rc


class Client:
    def __init__(self, port, timeout=20):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def _fill(self):
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise EOFError("the server closed the connection")
        self.buf += chunk

    def line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def reply(self):
        """One RESP2 reply: bytes for a status/bulk, int, None, a list, or ("err", text)."""
        line = self.line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest
        if kind == b"-":
            return ("err", rest)
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                self._fill()
            data, self.buf = self.buf[:n], self.buf[n + 2:]
            return data
        if kind == b"*":
            return [self.reply() for _ in range(int(rest))]
        raise ValueError("not RESP: %r" % line)

    def call(self, *args):
        self.sock.sendall(resp(*args))
        return self.reply()

    def raw_reply(self, payload):
        """Sends raw bytes and returns the raw bytes of the first reply line."""
        self.sock.sendall(payload)
        return self.line() + b"\r\n"

    def until_closed(self):
        """Everything the server sends until it closes (a reset counts as a close)."""
        out = self.buf
        try:
            while True:
                chunk = self.sock.recv(1 << 16)
                if not chunk:
                    break
                out += chunk
        except ConnectionResetError:
            pass
        return out

    def close(self):
        self.sock.close()


TOO_MANY = b"-ERR max number of clients reached\r\n"


def fill_up(port, count):
    """Connects `count` clients one by one, each sending PING; returns (served, refused replies, open sockets)."""
    served, refused, socks = 0, [], []
    for _ in range(count):
        try:
            c = Client(port, timeout=20)
        except ConnectionRefusedError:  # no listener (a crashed acceptor), or no server
            refused.append(b"<connection refused>")
            continue
        socks.append(c)
        try:
            c.sock.sendall(b"PING\r\n")
            first = c.line() + b"\r\n"
        except (EOFError, ConnectionResetError):
            first = b""
        if first == b"+PONG\r\n":
            served += 1
        else:
            refused.append(first + c.until_closed())
    return served, refused, socks


def still_serving(socks):
    """Whether the first client, served before the others came, still gets PONG."""
    try:
        return bool(socks) and socks[0].raw_reply(b"PING\r\n") == b"+PONG\r\n"
    except (EOFError, ConnectionResetError):
        return False


def ping_new(port):
    """Whether a new client gets PONG (False if refused or the server is gone)."""
    try:
        c = Client(port)
    except ConnectionRefusedError:
        return False
    try:
        return c.raw_reply(b"PING\r\n") == b"+PONG\r\n"
    except (EOFError, ConnectionResetError):
        return False
    finally:
        c.close()


def out_of_descriptors(data):
    """Issue 1 and 12: more clients than the descriptors allow."""
    nofile = 96
    srv = Server(data, nofile=nofile)
    try:
        lowered = [l for l in srv.lines if "max clients lowered" in l]
        check("a low ulimit -n lowers max clients, and says so", len(lowered) == 1, srv.lines)
        served, refused, socks = fill_up(srv.port, nofile + 20)
        check("out of descriptors: the server keeps running", still_serving(socks), "".join(srv.lines[-20:]))
        check("clients within the limit are served", 0 < served < nofile, "served %d" % served)
        check("the clients over the limit get Redis's error, then a close",
              len(refused) == nofile + 20 - served > 0 and all(r == TOO_MANY for r in refused),
              "served %d, refused %r" % (served, refused[:3]))
        for c in socks:
            c.close()
        # The connections' processes end as their sockets close; a new
        # client is served once there is room again.
        ok = any(ping_new(srv.port) for _ in range(200))
        check("after the clients leave, a new one is served", ok)
    finally:
        srv.stop()

    # A config without max_children: nothing lowers a limit, accept itself
    # fails with EMFILE, and the acceptor must wait it out, not crash.
    import json
    cfg_path = os.path.join(data, "no_limit.json")
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "app.json")) as f:
        cfg = json.load(f)
    for child in cfg["supervisor"]["children"]:
        child.pop("max_children", None)
    with open(cfg_path, "w") as f:
        json.dump(cfg, f)
    srv = Server(data, "--config", cfg_path, nofile=nofile)
    try:
        served, refused, socks = fill_up(srv.port, nofile + 20)
        check("EMFILE from accept: the server keeps running", still_serving(socks), "".join(srv.lines[-20:]))
        check("EMFILE from accept: clients that fit are served", 0 < served < nofile, "served %d" % served)
        check("EMFILE from accept: the others get Redis's error (by the spare descriptor)",
              len(refused) > 0 and all(r == TOO_MANY for r in refused), refused[:3])
        for c in socks:
            c.close()
        check("EMFILE from accept: a new client is served afterwards", any(ping_new(srv.port) for _ in range(200)))
    finally:
        srv.stop()


def expire_times(port):
    """Issue 3: expire times whose milliseconds overflow, as redis-server 7.0 answers them."""
    bad = b"-ERR invalid expire time in 'set' command\r\n"
    cases = [
        (["EX", "9223372036854775807"], bad),
        (["PX", "9223372036854775807"], bad),
        (["PX", "9223372036854775000"], bad),
        (["EX", "9223372036854775"], bad),  # fits *1000, overflows when now is added
        (["EX", "-9223372036854775808"], bad),
        (["EX", "0"], bad),
        (["EX", "-5"], bad),
        (["PX", "-5"], bad),
        (["EX", "abc"], b"-ERR value is not an integer or out of range\r\n"),
        (["PX", "01"], b"-ERR value is not an integer or out of range\r\n"),
        (["EX", "10", "PX", "100"], b"-ERR syntax error\r\n"),
        (["EX"], b"-ERR syntax error\r\n"),
        (["EX", "10", "EX", "100"], b"+OK\r\n"),
        (["EX", "9223372036854"], b"+OK\r\n"),
    ]
    c = Client(port)
    for opts, want in cases:
        got = c.raw_reply(resp("SET", "exp", "v", *opts))
        check("SET exp v %s -> %r" % (" ".join(opts), want), got == want, got)
    check("a refused expire time leaves no key with a wrapped expiry",
          c.call("SET", "exp2", "v", "EX", "9223372036854775807") == ("err", b"ERR invalid expire time in 'set' command")
          and c.call("EXISTS", "exp2") == 0)
    c.close()


def error_replies(port):
    """Issue 6: error replies quote client bytes only as redis-server 7.0 does."""
    c = Client(port)
    cases = [
        (resp(b"foo\r\n+OK\r\n", b"a\nb"), b"-ERR unknown command 'foo  +OK  ', with args beginning with: 'a b' \r\n"),
        (resp(b"foo", b"x" * 200),
         b"-ERR unknown command 'foo', with args beginning with: '" + b"x" * 128 + b"' \r\n"),
        (resp(b"foo", b"x" * 100, b"y" * 100, b"z"),
         b"-ERR unknown command 'foo', with args beginning with: '" + b"x" * 100 + b"' '" + b"y" * 25 + b"' \r\n"),
        (resp(b"c" * 200, b"a"), b"-ERR unknown command '" + b"c" * 128 + b"', with args beginning with: 'a' \r\n"),
        (resp(b"f\x00o", b"a\x00b"), b"-ERR unknown command 'f', with args beginning with: 'a' \r\n"),
        (resp(b"foo", b""), b"-ERR unknown command 'foo', with args beginning with: '' \r\n"),
        (resp(b"foo"), b"-ERR unknown command 'foo', with args beginning with: \r\n"),
        (resp(b"foo", *[b"%d" % i for i in range(1, 6)]),
         b"-ERR unknown command 'foo', with args beginning with: '1' '2' '3' '4' '5' \r\n"),
    ]
    for payload, want in cases:
        got = c.raw_reply(payload)
        check("error reply %r..." % payload[:30], got == want, got[:200])
    got = c.raw_reply(resp(b"foo", b"\r\n" * 50_000))  # 100 KiB
    check("a 100 KiB argument is not echoed whole", got == b"-ERR unknown command 'foo', with args beginning with: '"
          + b" " * 128 + b"' \r\n", got[:200])
    check("the stream is still in step after those", c.call("PING") == b"PONG")
    c.close()
    c = Client(port)
    got = c.raw_reply(b"*2\r\n$3\r\nGET\r\n\r\n")
    check("a protocol error quoting a CR is one line", got == b"-ERR Protocol error: expected '$', got ' '\r\n", got)
    c.close()


def stringmatch(p, s):
    """Redis 7.0's stringmatchlen (util.c), ported line by line: the reference for KEYS."""
    def at(b, i):
        return b[i] if i < len(b) else 0

    def m(pi, si):
        plen, slen = len(p) - pi, len(s) - si
        while plen and slen:
            c = p[pi]
            if c == ord("*"):
                while plen and at(p, pi + 1) == ord("*"):
                    pi += 1
                    plen -= 1
                if plen == 1:
                    return True
                while slen:
                    if m(pi + 1, si):
                        return True
                    si += 1
                    slen -= 1
                return False
            elif c == ord("?"):
                si += 1
                slen -= 1
            elif c == ord("["):
                pi += 1
                plen -= 1
                neg = at(p, pi) == ord("^")
                if neg:
                    pi += 1
                    plen -= 1
                match = False
                while True:
                    if at(p, pi) == ord("\\") and plen >= 2:
                        pi += 1
                        plen -= 1
                        if p[pi] == s[si]:
                            match = True
                    elif at(p, pi) == ord("]"):
                        break
                    elif plen == 0:
                        pi -= 1
                        plen += 1
                        break
                    elif plen >= 3 and p[pi + 1] == ord("-"):
                        sc = lambda v: v - 256 if v > 127 else v  # noqa: E731 (signed char, as x86 Redis)
                        lo, hi, v = sc(p[pi]), sc(p[pi + 2]), sc(s[si])
                        if lo > hi:
                            lo, hi = hi, lo
                        pi += 2
                        plen -= 2
                        if lo <= v <= hi:
                            match = True
                    elif p[pi] == s[si]:
                        match = True
                    pi += 1
                    plen -= 1
                if neg:
                    match = not match
                if not match:
                    return False
                si += 1
                slen -= 1
            else:
                if c == ord("\\") and plen >= 2:
                    pi += 1
                    plen -= 1
                if p[pi] != s[si]:
                    return False
                si += 1
                slen -= 1
            pi += 1
            plen -= 1
            if slen == 0:
                while at(p, pi) == ord("*"):
                    pi += 1
                    plen -= 1
                break
        return plen == 0 and slen == 0

    return p == b"*" or m(0, 0)  # KEYS's shortcut: `*` alone matches every key


def glob(port):
    """Issue 4: KEYS's glob has Redis's semantics and no exponential time."""
    rnd = random.Random(4)
    keys = {b"", b"a", b"ab", b"ba", b"a-b", b"]", b"^", b"\\", b"[", b"-", b"abab", b"\xe9", b"b\xffa"}
    while len(keys) < 60:
        keys.add(bytes(rnd.choice(b"ab-]^\\[\xe9") for _ in range(rnd.randrange(1, 7))))
    # The keys carry a prefix that the other checks' keys lack; the empty
    # key is there too (KEYS * lists it).
    all_keys = {b"g" + k for k in keys} | {b""}
    c = Client(port)
    for k in all_keys:
        c.call("SET", k, "1")
    patterns = [b"*", b"**", b"g", b"g*", b"g?", b"g[ab]", b"g[^a]*", b"g[a-]*", b"g[b-a]", b"g[]a]", b"g[^]",
                b"g[", b"g[^", b"g[ab", b"g\\", b"g\\a", b"g[\\]]", b"g[a\\", b"g*a*b", b"g*[", b"g[\xe0-\xf0]",
                b"g[a-\xff]", b"g*\\*", b"g?*?", b"*a", b"?"]
    while len(patterns) < 250:
        patterns.append(b"g" + bytes(rnd.choice(b"ab-]^\\[*?\xe9") for _ in range(rnd.randrange(0, 8))))
    wrong = []
    for p in patterns:
        got = c.call("KEYS", p)
        got = sorted(k for k in got if k in all_keys) if isinstance(got, list) else got
        want = sorted(k for k in all_keys if stringmatch(p, k))
        if got != want:
            wrong.append((p, got, want))
    check("KEYS matches Redis's stringmatchlen on %d patterns" % len(patterns), not wrong, wrong[:2])

    # One 50-byte key, a pattern that needs backtracking: was exponential.
    c.call("SET", b"a" * 50, "1")
    start = time.monotonic()
    c.sock.settimeout(10)
    try:
        got = c.call("KEYS", b"*a" * 16 + b"*b")
    except socket.timeout:
        got = "no reply in 10 s"
    took = time.monotonic() - start
    check("KEYS *a*a*...*b against a 50-byte key is fast (%.2f s)" % took, got == [] and took < 5, got)
    c.close()


def big_command(port):
    """Issue 5: a command of 1M arguments is parsed in one pass, not again on every read."""
    n = 1_000_000
    payload = b"*%d\r\n$6\r\nNOSUCH\r\n" % (n + 1) + b"$1\r\nx\r\n" * n
    c = Client(port, timeout=60)
    start = time.monotonic()
    c.sock.sendall(payload)
    got = c.line()
    took = time.monotonic() - start
    want = b"-ERR unknown command 'NOSUCH', with args beginning with: " + b"'x' " * 32
    check("a 7 MB command of 1M arguments is parsed in one pass (%.2f s)" % took, got + b"\r\n" == want + b"\r\n"
          and took < 6, got[:100])
    check("the connection is usable after it", c.call("PING") == b"PONG")
    c.close()


def query_buffer(data):
    """Issue 12: --max-query-buffer bounds a client's unfinished input; proto-max-bulk-len stays 512 MB."""
    limit = 1 << 20
    srv = Server(data, "--max-query-buffer", str(limit))
    try:
        c = Client(srv.port)
        check("a command under the limit is served", c.call("ECHO", b"v" * (limit // 2)) == b"v" * (limit // 2))
        c.close()
        c = Client(srv.port, timeout=20)
        c.sock.sendall(b"*2\r\n$4\r\nECHO\r\n$%d\r\n" % (4 * limit))
        closed = False
        try:
            for _ in range(3 * 16):
                c.sock.sendall(b"z" * (limit // 16))
            closed = c.until_closed() == b""
        except (BrokenPipeError, ConnectionResetError):
            closed = True
        except socket.timeout:
            closed = False
        check("a client past --max-query-buffer is closed, with no reply", closed)
        c.close()
        c = Client(srv.port)
        c.sock.sendall(b"*1\r\n$536870913\r\n")
        check("a bulk string over 512 MB is refused", c.until_closed() == b"-ERR Protocol error: invalid bulk length\r\n")
        c.close()
        check("the server still serves", srv.alive() and Client(srv.port).call("PING") == b"PONG")
        check("the close is logged", any("max-query-buffer" in l for l in srv.lines), srv.lines[-5:])
    finally:
        srv.stop()


def pipeline_model(port):
    """A pipeline spread over every shard answers as its commands run one by one would (a model in Python)."""
    rnd = random.Random(7)
    keys = ["pk%d" % i for i in range(40)]
    c = Client(port, timeout=30)
    others = c.call("DBSIZE")  # keys earlier checks left
    model = {}
    sent, want = [], []

    def value():
        return str(rnd.randrange(-5, 1000)) if rnd.random() < 0.8 else "v%d" % rnd.randrange(100)

    for _ in range(3000):
        r = rnd.random()
        k = rnd.choice(keys)
        if r < 0.2:
            v = value()
            sent.append(("SET", k, v))
            model[k] = v
            want.append(b"OK")
        elif r < 0.35:
            sent.append(("GET", k))
            want.append(model[k].encode() if k in model else None)
        elif r < 0.5:
            sent.append(("INCR", k))
            v = model.get(k, "0")
            try:
                n = int(v)
                model[k] = str(n + 1)
                want.append(n + 1)
            except ValueError:
                want.append(("err", b"ERR value is not an integer or out of range"))
        elif r < 0.6:
            ks = rnd.sample(keys, rnd.randrange(1, 5))
            sent.append(("DEL", *ks))
            want.append(sum(1 for x in ks if model.pop(x, None) is not None))
        elif r < 0.68:
            ks = [rnd.choice(keys) for _ in range(rnd.randrange(1, 5))]  # repeats count, as in Redis
            sent.append(("EXISTS", *ks))
            want.append(sum(1 for x in ks if x in model))
        elif r < 0.78:
            ks = [rnd.choice(keys) for _ in range(rnd.randrange(1, 6))]
            sent.append(("MGET", *ks))
            want.append([model[x].encode() if x in model else None for x in ks])
        elif r < 0.86:
            pairs = [(rnd.choice(keys), value()) for _ in range(rnd.randrange(1, 4))]
            sent.append(("MSET", *[x for p in pairs for x in p]))
            for x, v in pairs:
                model[x] = v
            want.append(b"OK")
        elif r < 0.9:
            sent.append(("DBSIZE",))
            want.append(others + len(model))
        elif r < 0.93:
            sent.append(("KEYS", "pk1*"))
            want.append(sorted(x.encode() for x in model if x.startswith("pk1")))
        elif r < 0.96:
            sent.append(("PING",))
            want.append(b"PONG")
        else:
            sent.append(("NOSUCH", k))
            want.append(("err", b"ERR unknown command 'NOSUCH', with args beginning with: '%s' " % k.encode()))
    got = []
    # In writes of 300 commands (each the size of many reads), reading the
    # replies of one before sending the next.
    for start in range(0, len(sent), 300):
        chunk = sent[start:start + 300]
        c.sock.sendall(b"".join(resp(*cmd) for cmd in chunk))
        for cmd in chunk:
            r = c.reply()
            got.append(sorted(r) if cmd[0] == "KEYS" else r)
    bad = [(i, sent[i], got[i], want[i]) for i in range(len(sent)) if got[i] != want[i]]
    check("a pipeline of 3000 commands over every shard answers as one by one", not bad, bad[:3])
    check("MGET of the model's keys after it", c.call("MGET", *keys) == [model[x].encode() if x in model else None
                                                                          for x in keys])
    c.call("DEL", *keys)
    c.close()


def pipeline_edges(port):
    """QUIT in a pipeline ends it (nothing after it runs); a protocol error comes after the replies before it."""
    c = Client(port)
    c.sock.sendall(resp("SET", "q1", "1") + resp("QUIT") + resp("SET", "q2", "2"))
    check("QUIT in a pipeline: the replies before it, then +OK, then the close",
          c.until_closed() == b"+OK\r\n+OK\r\n")
    c.close()
    c = Client(port)
    check("QUIT in a pipeline: what came after it did not run", c.call("EXISTS", "q1", "q2") == 1)
    c.sock.sendall(resp("SET", "pe", "1") + resp("GET", "pe") + b"*1\r\n$x\r\n" + resp("SET", "pe", "2"))
    check("a protocol error after good commands: their replies, then the error, then the close",
          c.until_closed() == b"+OK\r\n$1\r\n1\r\n-ERR Protocol error: invalid bulk length\r\n")
    c.close()
    c = Client(port)
    check("a protocol error: nothing after it ran", c.call("GET", "pe") == b"1")
    c.call("DEL", "q1", "pe")
    c.close()


def unread_pipeline(port):
    """A client that sends its whole pipeline before it reads (as redis-py does) is answered, not deadlocked."""
    value = b"v" * 100000
    c = Client(port, timeout=20)
    payload = b"".join(resp("SET", "u%d" % i, value) + resp("GET", "u%d" % i) for i in range(200))
    try:
        c.sock.sendall(payload)  # 20 MB: more than the socket buffers hold, both ways
        replies = [c.reply() for _ in range(400)]
        ok = all(r == (b"OK" if i % 2 == 0 else value) for i, r in enumerate(replies))
    except (socket.timeout, OSError) as e:
        ok, replies = False, [repr(e)]
    check("a 20 MB pipeline sent before reading gets its 400 replies", ok, replies[:1])
    c.close()
    c = Client(port)
    deadline = time.monotonic() + 10
    clients = None
    while time.monotonic() < deadline:  # the closed client's connection (and its writer) go away
        info = c.call("INFO")
        clients = int(info.split(b"connected_clients:")[1].split(b"\r\n")[0])
        if clients == 1:
            break
    check("its connection is gone once it closes (connected_clients %s)" % clients, clients == 1)
    c.call("DEL", *["u%d" % i for i in range(200)])
    c.close()


def no_delay(srv):
    """As Redis, the server's sockets have TCP_NODELAY: a client that writes its pipeline in
    pieces was answered after the first piece, and each later reply waited for the
    client's delayed ACK (about 40 ms a pipeline of 5 PINGs written 3 + 2 here)."""
    c = Client(srv.port)
    check("PING", c.call("PING") == b"PONG")
    set_ = server_no_delay(srv.proc.pid, srv.port, c.sock)
    if set_ is None:
        print("skipped: cannot reach the server's socket here (pidfd_getfd not allowed)")
    else:
        check("the server's end of a client connection has TCP_NODELAY set", set_)
    c.close()


def memory_kib(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise RuntimeError("no %s in /proc/%d/status" % (key, pid))


def big_value(data):
    """Issue 12: a large value is held about twice at its peak (as Redis), and nothing of it stays in an idle connection."""
    srv = Server(data, "--appendfsync", "no")
    try:
        pid = srv.proc.pid
        size = 48 << 20  # past glibc's largest mmap threshold: freed memory goes back to the system
        c = Client(srv.port, timeout=60)
        check("PING before the large value", c.call("PING") == b"PONG")
        peak0, rss0 = memory_kib(pid, "VmHWM"), memory_kib(pid, "VmRSS")
        check("SET of a 48 MiB value", c.call("SET", "big", b"x" * size) == b"OK")
        peak_set = memory_kib(pid, "VmHWM") - peak0
        got = c.call("GET", "big")
        check("GET gives the 48 MiB value back", got == b"x" * size, len(got or b""))
        check("the connection is served after it", c.call("PING") == b"PONG")
        peak_all = memory_kib(pid, "VmHWM") - peak0
        idle = memory_kib(pid, "VmRSS") - rss0
        kib = size // 1024
        if SANITIZED:
            print("skipped under a sanitizer: the memory ratios (SET peak %.2fx, GET peak %.2fx, idle %.2fx)"
                  % (peak_set / kib, peak_all / kib, idle / kib))
        else:
            # Before: 6x at the peak, 3x left after the GET.
            check("the SET's peak is under 2.5x the value (%.2fx)" % (peak_set / kib), peak_set < 2.5 * kib)
            check("the GET's peak is under 2.5x the value (%.2fx)" % (peak_all / kib), peak_all < 2.5 * kib)
            check("afterwards the server holds the value about once (%.2fx)" % (idle / kib), idle < 1.5 * kib)
        c.call("DEL", "big")
        c.close()
    finally:
        srv.stop()


def connections_spread(port):
    """Plain-spawned connections start where fewer processes do their I/O, so 20 clients
    use both schedulers (all 20 landed on one before, whichever spawned them)."""
    clients = [Client(port) for _ in range(20)]
    for c in clients:
        check("a connection answers", c.call("PING") == b"PONG")
    info = clients[0].call("INFO").decode()
    lines = re.findall(r"^scheduler_\d+:.*,compacted_out=(\d+),.*,io_bound=(\d+)\r?$", info, re.M)
    bound = [int(b) for _, b in lines]
    compacted = [int(c) for c, _ in lines]
    # 20 clients and the acceptor's socket: 10/11 when connections stayed
    # where they were placed (0/21 before the placement rule). Their sockets
    # are otp::follow now, so the balancing may move them after placement:
    # 5/16 once under ASan. All on one scheduler is what this guards against.
    # The connection answering INFO calls the shards for their lines, and
    # compaction may move it while it waits for them: a process that moved
    # counts again at its next socket wait, so it may be missing (9/11).
    # Compaction also gathers idle connections on the busier scheduler when
    # the two have little to do (20/1 once under TSan, 23 compacted from the
    # second): what a scheduler handed over that way counts as placed there.
    check("20 connections spread over both schedulers (io_bound %s, compacted_out %s)" % (bound, compacted),
          len(bound) == 2 and sum(bound) in (20, 21)
          and min(b + c for b, c in zip(bound, compacted)) >= 4, info)
    for c in clients:
        c.close()


def main():
    data = tempfile.mkdtemp(prefix="kvstore-net-")
    t0 = time.monotonic()
    try:
        srv = Server(data)
        try:
            connections_spread(srv.port)  # first: no other client's connection still open
            expire_times(srv.port)
            error_replies(srv.port)
            big_command(srv.port)
            pipeline_model(srv.port)
            pipeline_edges(srv.port)
            unread_pipeline(srv.port)
            no_delay(srv)
            glob(srv.port)  # last: before the fix its KEYS never ends
            check("the server survived every check", srv.alive())
        finally:
            srv.stop()
        query_buffer(data)
        big_value(data)
        out_of_descriptors(data)
    finally:
        shutil.rmtree(data, ignore_errors=True)
    print("took %.1f s" % (time.monotonic() - t0))
    print("%d checks failed" % len(failures) if failures else "all checks passed")
    sys.exit(1 if failures else 0)


main()
