# SPDX-License-Identifier: Apache-2.0
# The storage side of samples/kvstore: a damaged log, the everysec sync,
# active expiry, log rewrite, the shard count, the data directory's safety,
# KEYS in chunks, kill -9 with appendfsync always, and maxmemory.
#
# usage: test_store.py KVSTORE_BINARY
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zlib

import kvtest
from kvtest import check, failures, resp

BIN = sys.argv[1]
CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "app.json")
HEADER = b"*2\r\n$5\r\nKVLOG\r\n$1\r\n2\r\n"


def new_dir():
    d = tempfile.mkdtemp(prefix="kvstore-store-")  # mode 0700
    return d


class Server(kvtest.Server):
    def __init__(self, data, *extra, expect_fail=False, env=None):
        super().__init__(BIN, data, *extra, expect_fail=expect_fail, env=env)


class Conn:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.f = self.s.makefile("rb")

    def send(self, *args):
        self.s.sendall(resp(*args))

    def reply(self):
        line = self.f.readline()
        if not line:
            raise ConnectionError("closed")
        if line[:1] == b"$":
            n = int(line[1:])
            if n < 0:
                return None
            data = self.f.read(n + 2)
            return data[:-2].decode()
        if line[:1] == b"*":
            return [self.reply() for _ in range(int(line[1:]))]
        if line[:1] == b":":
            return int(line[1:])
        if line[:1] == b"+":
            return line[1:-2].decode()
        return line[:-2].decode()  # an error keeps its '-'


    def cmd(self, *args):
        self.send(*args)
        return self.reply()

    def pipeline(self, commands):
        self.s.sendall(b"".join(resp(*args) for args in commands))
        return [self.reply() for _ in commands]

    def close(self):
        self.s.close()


def record(*args):
    """One record of the checksummed log format."""
    out = b"*%d\r\n" % (len(args) + 1) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)
    return out + b"$8\r\n%08x\r\n" % zlib.crc32(out)


def legacy(*args):
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


def write_log(data, body, shards=1):
    with open(os.path.join(data, "shard-0.aof"), "wb") as f:
        f.write(body)
    with open(os.path.join(data, "kvstore.meta"), "w") as f:
        f.write("kvstore shards %d\n" % shards)


def log_path(data, i=0):
    return os.path.join(data, "shard-%d.aof" % i)


def hundred_keys():
    """A 1-shard log of k000..k099, written by the server; returns (dir, bytes)."""
    data = new_dir()
    srv = Server(data, "--shards", "1", "--appendfsync", "always")
    c = Conn(srv.port)
    c.pipeline([("SET", "k%03d" % i, "value-%03d" % i) for i in range(100)])
    c.close()
    srv.stop()
    with open(log_path(data), "rb") as f:
        return data, f.read()


def damaged_logs():
    data, good = hundred_keys()
    mid = good.index(b"value-050")
    cases = {
        "a structural byte": good[:mid - 4] + b"#" + good[mid - 3:],  # the '$' of the value
        "a value byte": good[:mid + 6] + b"9" + good[mid + 7:],       # value-050 -> value-950
        "an inline command": good[:good.index(b"*", mid)] + b"SET k050 hacked\r\n" + good[good.index(b"*", mid):],
    }
    for name, body in cases.items():
        write_log(data, body)
        srv = Server(data, "--shards", "1", expect_fail=True)
        out = srv.output()
        refused = not srv.started and srv.proc.returncode != 0
        if srv.started:
            srv.stop()
        check("damage in the middle (%s): the server refuses to start" % name, refused, out[-300:])
        check("damage in the middle (%s): the error names the file and the byte" % name,
              re.search(re.escape(log_path(data)) + r" is damaged at byte \d+", out) is not None, out[-300:])
        with open(log_path(data), "rb") as f:
            check("damage in the middle (%s): the log is left as it was" % name, f.read() == body)

    # --repair-log cuts at the first damage and says what it dropped.
    body = cases["a value byte"]
    write_log(data, body)
    cut = body.rindex(b"*", 0, mid)
    srv = Server(data, "--shards", "1", "--repair-log")
    c = Conn(srv.port)
    check("--repair-log: the records before the damage are kept",
          c.cmd("GET", "k049") == "value-049" and c.cmd("DBSIZE") == 50, c.cmd("DBSIZE"))
    c.close()
    srv.stop()
    out = srv.output()
    check("--repair-log: it says where it cut and how much it dropped",
          ("cut at byte %d, dropped %d bytes" % (cut, len(body) - cut)) in out, out[-400:])
    with open(log_path(data), "rb") as f:
        check("--repair-log: the log now ends where the damage began", f.read() == body[:cut])

    # A torn last record (a crash during a write) is cut, with a warning.
    torn = good[:-7]
    write_log(data, torn)
    srv = Server(data, "--shards", "1")
    c = Conn(srv.port)
    check("a torn last record: the others load", c.cmd("DBSIZE") == 99 and c.cmd("GET", "k098") == "value-098")
    c.close()
    srv.stop()
    out = srv.output()
    last = good.rindex(b"*4\r\n")
    check("a torn last record: a warning says what was cut",
          ("ended with a record cut short" in out and "cut at byte %d, dropped %d bytes" % (last, len(torn) - last) in out),
          out[-400:])
    shutil.rmtree(data, ignore_errors=True)


def old_format():
    data = new_dir()
    past = int(time.time() * 1000) - 1000
    body = (legacy(b"SET", b"a", b"1") + legacy(b"SET", b"b", b"2") + legacy(b"DEL", b"a")
            + legacy(b"SET", b"gone", b"x", b"PXAT", b"%d" % past))
    write_log(data, body)
    srv = Server(data, "--shards", "1")
    c = Conn(srv.port)
    check("a log without checksums (the first format) is read",
          c.cmd("GET", "b") == "2" and c.cmd("GET", "a") is None and c.cmd("DBSIZE") == 1)
    c.close()
    srv.stop()
    with open(log_path(data), "rb") as f:
        check("... and rewritten with checksums", f.read() == HEADER + record(b"SET", b"b", b"2"))
    shutil.rmtree(data, ignore_errors=True)


def wait_for(cond, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def everysec():
    """A write followed only by reads is synced within about a second."""
    data = new_dir()
    srv = Server(data, "--shards", "1", "--appendfsync", "everysec")
    c = Conn(srv.port)
    c.cmd("SET", "first", "1")
    c.cmd("SET", "second", "2")  # within a second of the first: left for the periodic sync
    before = _log_syncs(c)
    start = time.monotonic()
    synced = False
    while time.monotonic() - start < 4.0:
        c.cmd("GET", "second")
        if _log_syncs(c) > before:
            synced = True
            break
        time.sleep(0.2)
    check("everysec: a write followed by a GET every 0.2 s is synced within 4 s", synced)
    c.close()
    srv.stop()
    shutil.rmtree(data, ignore_errors=True)


def _log_syncs(conn):
    """The server's count of log syncs (INFO persistence, aof_fsyncs)."""
    info = conn.cmd("INFO")
    text = info.decode() if isinstance(info, bytes) else str(info)
    m = re.search(r"aof_fsyncs:(\d+)", text)
    return int(m.group(1)) if m else -1


def expiry():
    data = new_dir()
    # Keys expired while the server was down are not loaded back.
    past = int(time.time() * 1000) - 1000
    write_log(data, b"".join(legacy(b"SET", b"old%d" % i, b"x", b"PXAT", b"%d" % past) for i in range(50)))
    srv = Server(data, "--shards", "1", "--appendfsync", "no")
    c = Conn(srv.port)
    c.pipeline([("SET", "short%d" % i, "x", "PX", "50") for i in range(200)] + [("SET", "stays", "1")])
    log = log_path(data)

    def dels():
        with open(log, "rb") as f:
            return re.findall(rb"\$3\r\nDEL\r\n\$\d+\r\n([a-z0-9]+)\r\n", f.read())

    freed = wait_for(lambda: len([k for k in dels() if k.startswith(b"short")]) == 200, 15)
    check("active expiry: 200 keys never read again are freed (logged as DEL)", freed, len(dels()))
    check("replay: keys that expired while the server was down are not loaded",
          freed and not [k for k in dels() if k.startswith(b"old")], dels()[:5])
    check("active expiry: a key without a deadline stays", c.cmd("GET", "stays") == "1" and c.cmd("DBSIZE") == 1)
    c.close()
    srv.stop()
    shutil.rmtree(data, ignore_errors=True)


# Each command and the reply redis-server 7.0 gives, in order (key k has no
# deadline at first; "pttl" stands for a number of milliseconds in (0, limit]).
EXPIRE_SCRIPT = [
    (("SET", "k", "v"), "OK"), (("TTL", "k"), -1), (("PTTL", "k"), -1), (("TTL", "nokey"), -2),
    (("EXPIRE", "nokey", "10"), 0), (("EXPIRE", "k", "100"), 1), (("TTL", "k"), 100), (("PTTL", "k"), ("pttl", 100000)),
    (("EXPIRE", "k", "100", "nx"), 0), (("EXPIRE", "k", "200", "xx"), 1), (("TTL", "k"), 200),
    (("EXPIRE", "k", "50", "gt"), 0), (("EXPIRE", "k", "500", "gt"), 1), (("EXPIRE", "k", "1000", "lt"), 0),
    (("TTL", "k"), 500),
    (("EXPIRE", "k", "10", "nx", "xx"), "-ERR NX and XX, GT or LT options at the same time are not compatible"),
    (("EXPIRE", "k", "10", "gt", "lt"), "-ERR GT and LT options at the same time are not compatible"),
    (("EXPIRE", "k", "10", "foo"), "-ERR Unsupported option foo"),
    (("EXPIRE", "k", "abc"), "-ERR value is not an integer or out of range"),
    (("EXPIRE", "k", "abc", "foo"), "-ERR Unsupported option foo"),
    (("EXPIRE", "k", "9223372036854775807"), "-ERR invalid expire time in 'expire' command"),
    (("PEXPIRE", "k", "9223372036854775807"), "-ERR invalid expire time in 'pexpire' command"),
    (("EXPIRE", "k"), "-ERR wrong number of arguments for 'expire' command"),
    (("TTL",), "-ERR wrong number of arguments for 'ttl' command"),
    (("TTL", "a", "b"), "-ERR wrong number of arguments for 'ttl' command"),
    (("PERSIST", "k"), 1), (("PERSIST", "k"), 0), (("TTL", "k"), -1), (("PERSIST", "nokey"), 0),
    (("EXPIRE", "k", "10", "gt"), 0), (("EXPIRE", "k", "10", "lt"), 1), (("TTL", "k"), 10),
    (("EXPIRE", "k", "-1"), 1), (("EXISTS", "k"), 0),
    (("SET", "k2", "v"), "OK"), (("PEXPIRE", "k2", "0"), 1), (("EXISTS", "k2"), 0),
    (("SET", "k3", "v"), "OK"), (("EXPIRE", "k3", "10", "NX"), 1),
    (("PERSIST", "k3", "extra"), "-ERR wrong number of arguments for 'persist' command"),
    (("EXPIRE", "k3", "1.5"), "-ERR value is not an integer or out of range"),
    (("EXPIRE", "k3", "-9223372036854775808"), "-ERR invalid expire time in 'expire' command"),
    (("EXISTS", "k3"), 1),
    (("SET", "k4", "v"), "OK"), (("EXPIRE", "k4", "-9223372036854775"), 1), (("EXISTS", "k4"), 0),
    (("SET", "k5", "v"), "OK"), (("PEXPIRE", "k5", "9223372036854775000"), "-ERR invalid expire time in 'pexpire' command"),
    (("SET", "k6", "v"), "OK"), (("EXPIRE", "k6", "9223372036854775"), "-ERR invalid expire time in 'expire' command"),
]


# SET's options and INCRBY/DECR/DECRBY, with the replies redis-server 7.0 gives.
SET_SCRIPT = [
    (('SET', 'a', '1', 'nx'), 'OK'),
    (('SET', 'a', '2', 'nx'), None),
    (('GET', 'a'), '1'),
    (('SET', 'a', '3', 'xx'), 'OK'),
    (('SET', 'b', '3', 'xx'), None),
    (('SET', 'a', '4', 'nx', 'xx'), '-ERR syntax error'),
    (('SET', 'a', '5', 'get'), '3'),
    (('SET', 'c', '5', 'get'), None),
    (('GET', 'c'), '5'),
    (('SET', 'a', '6', 'nx', 'get'), '5'),
    (('SET', 'd', '6', 'nx', 'get'), None),
    (('GET', 'd'), '6'),
    (('SET', 'a', '7', 'xx', 'get'), '5'),
    (('SET', 'e', '7', 'xx', 'get'), None),
    (('GET', 'e'), None),
    (('SET', 'a', '8', 'ex', '100'), 'OK'),
    (('TTL', 'a'), 100),
    (('SET', 'a', '9', 'keepttl'), 'OK'),
    (('TTL', 'a'), 100),
    (('SET', 'a', '10'), 'OK'),
    (('TTL', 'a'), -1),
    (('SET', 'a', '11', 'keepttl', 'ex', '10'), '-ERR syntax error'),
    (('SET', 'a', '12', 'ex', '10', 'keepttl'), '-ERR syntax error'),
    (('SET', 'a', '13', 'exat', '99999999999'), 'OK'),
    (('SET', 'a', '14', 'pxat', '1'), 'OK'),
    (('EXISTS', 'a'), 0),
    (('SET', 'a', '15', 'exat', '0'), "-ERR invalid expire time in 'set' command"),
    (('SET', 'a', '16', 'exat', '-5'), "-ERR invalid expire time in 'set' command"),
    (('SET', 'a', '17', 'px', '0'), "-ERR invalid expire time in 'set' command"),
    (('SET', 'a', '18', 'ex', '9223372036854775'), "-ERR invalid expire time in 'set' command"),
    (('SET', 'a', '19', 'exat', '9223372036854775'), 'OK'),
    (('SET', 'a', '20', 'pxat', '9223372036854775807'), 'OK'),
    (('SET', 'a', '21', 'ex', '5', 'px', '5'), '-ERR syntax error'),
    (('SET', 'a', '22', 'ex', '5', 'ex', '50'), 'OK'),
    (('TTL', 'a'), 50),
    (('SET', 'a', '23', 'exat', '1', 'ex', '5'), '-ERR syntax error'),
    (('SET', 'a', '24', 'get', 'get'), '22'),
    (('SET', 'a', '25', 'nx', 'nx'), None),
    (('SET', 'a', '26', 'foo'), '-ERR syntax error'),
    (('SET', 'a', '27', 'ex'), '-ERR syntax error'),
    (('SET', 'a', '28', 'ex', 'abc'), '-ERR value is not an integer or out of range'),
    (('SET', 'a', '29', 'exat', 'abc'), '-ERR value is not an integer or out of range'),
    (('SET', 'a', '30', 'keepttl', 'keepttl'), 'OK'),
    (('SET', 'a', '31', 'px', '5', 'keepttl'), '-ERR syntax error'),
    (('SET', 'a', '32', 'nx'), None),
    (('SET', 'a', '33', 'EXAT', '1', 'get'), '30'),
    (('GET', 'a'), None),
    (('SET', 'f', '1', 'pxat', '1', 'get'), None),
    (('INCRBY', 'n', '5'), 5),
    (('INCRBY', 'n', 'x'), '-ERR value is not an integer or out of range'),
    (('DECR', 'n'), 4),
    (('DECRBY', 'n', '10'), -6),
    (('DECRBY', 'n', '-9223372036854775808'), '-ERR decrement would overflow'),
    (('INCRBY', 'n', '9223372036854775807'), 9223372036854775801),
    (('DECR',), "-ERR wrong number of arguments for 'decr' command"),
    (('INCRBY', 'n'), "-ERR wrong number of arguments for 'incrby' command"),
    (('INCRBY', 'n', '1', '2'), "-ERR wrong number of arguments for 'incrby' command"),
    (('SET', 's', 'abc'), 'OK'),
    (('DECR', 's'), '-ERR value is not an integer or out of range'),
    (('INCRBY', 'n', '1.5'), '-ERR value is not an integer or out of range'),
    (('SET', 'big', '9223372036854775807'), 'OK'),
    (('INCRBY', 'big', '1'), '-ERR increment or decrement would overflow'),
    (('SET', 'small', '-9223372036854775808'), 'OK'),
    (('DECR', 'small'), '-ERR increment or decrement would overflow'),
    (('DECRBY', 'small', '1'), '-ERR increment or decrement would overflow'),
    (('INCRBY', 'small', '-1'), '-ERR increment or decrement would overflow'),
    (('INCR', 'small'), -9223372036854775807),
    (('DECRBY', 'big', '-1'), '-ERR increment or decrement would overflow'),
    (('SET', 't', '5', 'ex', '100'), 'OK'),
    (('INCRBY', 't', '3'), 8),
    (('TTL', 't'), 100),
    (('DECR', 't'), 7),
    (('GET', 't'), '7'),
]


def check_script(c, script):
    """Sends a script's commands as one pipeline and checks each reply (("pttl", limit): a number in (0, limit])."""
    got = c.pipeline([cmd for cmd, _ in script])
    for (cmd, want), reply in zip(script, got):
        ok = (isinstance(reply, int) and 0 < reply <= want[1]) if isinstance(want, tuple) else reply == want
        check("%s -> %r" % (" ".join(cmd), want), ok, reply)


def script_then_restart(script, queries):
    """Checks `script` on a new 2-shard server (appendfsync always), restarts
    it on the same data, and returns the replies to `queries` there."""
    data = new_dir()
    srv = Server(data, "--shards", "2", "--appendfsync", "always")
    c = Conn(srv.port)
    check_script(c, script)
    c.close()
    srv.stop()
    srv = Server(data, "--shards", "2", "--appendfsync", "always")
    c = Conn(srv.port)
    got = c.pipeline(queries)
    c.close()
    srv.stop()
    shutil.rmtree(data, ignore_errors=True)
    return got


def set_options():
    """SET with NX, XX, GET, KEEPTTL, EX, PX, EXAT and PXAT, and INCRBY, DECR and DECRBY answer as redis-server 7.0; their effects survive a restart."""
    got = script_then_restart(SET_SCRIPT, [("GET", "a"), ("GET", "c"), ("GET", "d"), ("EXISTS", "e"), ("EXISTS", "f"),
                                           ("GET", "n"), ("GET", "small"), ("GET", "t"), ("TTL", "t")])
    check("after a restart: what the script left (a gone by EXAT in the past, t's deadline kept by INCRBY and DECR)",
          got[:8] == [None, "5", "6", 0, 0, "9223372036854775801", "-9223372036854775807", "7"] and got[8] in (99, 100),
          got)


# STRLEN, GETDEL, SETNX, GETSET, EXPIREAT and PEXPIREAT, with redis-server 7.0's replies.
STRING_SCRIPT = [
    (('SET', 'a', 'hello'), 'OK'),
    (('STRLEN', 'a'), 5),
    (('STRLEN', 'nokey'), 0),
    (('STRLEN',), "-ERR wrong number of arguments for 'strlen' command"),
    (('GETDEL', 'a'), 'hello'),
    (('GETDEL', 'a'), None),
    (('EXISTS', 'a'), 0),
    (('GETDEL',), "-ERR wrong number of arguments for 'getdel' command"),
    (('SETNX', 'b', '1'), 1),
    (('SETNX', 'b', '2'), 0),
    (('GET', 'b'), '1'),
    (('SETNX', 'b'), "-ERR wrong number of arguments for 'setnx' command"),
    (('GETSET', 'b', '3'), '1'),
    (('GETSET', 'c', '4'), None),
    (('GET', 'c'), '4'),
    (('SET', 'd', '1', 'ex', '100'), 'OK'),
    (('GETSET', 'd', '2'), '1'),
    (('TTL', 'd'), -1),
    (('EXPIREAT', 'd', '1'), 1),
    (('EXISTS', 'd'), 0),
    (('SET', 'e', '1'), 'OK'),
    (('EXPIREAT', 'e', '99999999999'), 1),
    (('PEXPIREAT', 'e', '99999999999000'), 1),
    (('EXPIREAT', 'e', '9223372036854775807'), "-ERR invalid expire time in 'expireat' command"),
    (('EXPIREAT', 'e', '-9223372036854775808'), "-ERR invalid expire time in 'expireat' command"),
    (('PEXPIREAT', 'e', '-9223372036854775808'), 1),
    (('EXISTS', 'e'), 0),
    (('SET', 'f', '1'), 'OK'),
    (('PEXPIREAT', 'f', '9223372036854775807'), 1),
    (('EXPIREAT', 'f', '9223372036854775'), 1),
    (('EXPIREAT', 'f', '9223372036854776'), "-ERR invalid expire time in 'expireat' command"),
    (('EXPIREAT', 'f', '1', 'xx'), 1),
    (('EXPIREAT', 'f', 'abc'), '-ERR value is not an integer or out of range'),
    (('EXPIREAT', 'f'), "-ERR wrong number of arguments for 'expireat' command"),
    (('STRLEN', 'f'), 0),
    (('SET', 'g', '1'), 'OK'),
    (('INCR', 'g'), 2),
    (('STRLEN', 'g'), 1),
    (('SETNX', 'g', '5', '6'), "-ERR wrong number of arguments for 'setnx' command"),
    (('GETSET', 'g'), "-ERR wrong number of arguments for 'getset' command"),
    (('EXPIREAT', 'nokey', '99999999999'), 0),
]


def string_commands():
    """STRLEN, GETDEL, SETNX, GETSET, EXPIREAT and PEXPIREAT answer as redis-server 7.0; their effects survive a restart."""
    got = script_then_restart(STRING_SCRIPT, [("EXISTS", "a"), ("GET", "b"), ("GET", "c"), ("EXISTS", "d"),
                                              ("EXISTS", "e"), ("EXISTS", "f"), ("GET", "g"), ("TTL", "d")])
    check("after a restart: GETDEL's and EXPIREAT's deletions stay, GETSET's and SETNX's values are there",
          got == [0, "3", "4", 0, 0, 0, "2", -2], got)


def expire_commands():
    """TTL, PTTL, EXPIRE, PEXPIRE (NX, XX, GT, LT) and PERSIST answer as redis-server 7.0, and survive a restart."""
    data = new_dir()
    srv = Server(data, "--shards", "2", "--appendfsync", "always")
    c = Conn(srv.port)
    check_script(c, EXPIRE_SCRIPT)
    # Deadlines set, moved and removed by these commands are what a restart
    # loads, also for a value large enough to be kept in its own string.
    big = "b" * 100000
    c.pipeline([("SET", "e", "1"), ("EXPIRE", "e", "1000"), ("SET", "p", "2", "EX", "1000"), ("PERSIST", "p"),
                ("SET", "gone", "3"), ("PEXPIRE", "gone", "-5"), ("SET", "big", big), ("EXPIRE", "big", "2000"),
                ("SET", "bigp", big, "EX", "3000"), ("PERSIST", "bigp")])
    before = used_memory(c)
    check("a large value keeps its value through EXPIRE and PERSIST",
          c.cmd("GET", "big") == big and c.cmd("GET", "bigp") == big and c.cmd("TTL", "big") == 2000
          and c.cmd("TTL", "bigp") == -1)
    c.close()
    srv.stop()
    srv = Server(data, "--shards", "2", "--appendfsync", "always")
    c = Conn(srv.port)
    got = c.pipeline([("TTL", "e"), ("GET", "e"), ("TTL", "p"), ("EXISTS", "gone"), ("GET", "big"), ("TTL", "big"),
                      ("GET", "bigp"), ("TTL", "bigp")])
    check("after a restart: EXPIRE's deadline, PERSIST's none, a key EXPIRE deleted is gone, large values intact",
          got[0] in (999, 1000) and got[1] == "1" and got[2] == -1 and got[3] == 0 and got[4] == big
          and got[5] in (1999, 2000) and got[6] == big and got[7] == -1, [g if len(str(g)) < 20 else "..." for g in got])
    check("used_memory after the restart is what it was (%d, %d)" % (before, used_memory(c)),
          abs(used_memory(c) - before) < 1024)
    c.cmd("DEL", "e", "p", "big", "bigp", "k3", "k5", "k6")
    check("every byte is given back once the keys are deleted (used_memory %d)" % used_memory(c), used_memory(c) == 0)
    c.close()
    srv.stop()
    shutil.rmtree(data, ignore_errors=True)


def small_rewrite_config(data, fsync="no", chunk=None):
    with open(CONFIG) as f:
        doc = json.load(f)
    for child in doc["supervisor"]["children"]:
        if child["id"] == "shards":
            child["args"]["aof_rewrite_min_size"] = 4096
            child["args"]["appendfsync"] = fsync
            if chunk is not None:
                child["args"]["aof_rewrite_chunk"] = chunk
    path = os.path.join(data, "..", os.path.basename(data) + "-app.json")
    with open(path, "w") as f:
        json.dump(doc, f)
    return path


def rewrite():
    data = new_dir()
    config = small_rewrite_config(data)
    srv = Server(data, "--config", config, "--shards", "1")
    c = Conn(srv.port)
    c.pipeline([("SET", "hot", "v%d" % i) for i in range(3000)] + [("SET", "cold%d" % i, "c") for i in range(20)])
    size = lambda: os.path.getsize(log_path(data))
    shrunk = wait_for(lambda: size() < 4096, 10)
    check("rewrite: a log grown past twice its live data is compacted", shrunk, size())
    c.pipeline([("SET", "after", "1")])
    c.close()
    srv.stop()
    leftovers = [f for f in os.listdir(data) if f.endswith(".rewrite")]
    check("rewrite: no temporary file is left", not leftovers, leftovers)
    srv = Server(data, "--shards", "1")
    c = Conn(srv.port)
    check("rewrite: every key is back after a restart",
          c.cmd("GET", "hot") == "v2999" and c.cmd("GET", "after") == "1" and c.cmd("DBSIZE") == 22)
    c.close()
    srv.stop()
    os.unlink(config)
    shutil.rmtree(data, ignore_errors=True)


def info(conn):
    """INFO's fields, as strings."""
    return dict(re.findall(r"^(\w+):(.*?)\r?$", str(conn.cmd("INFO")), re.M))


def rewriting(fields):
    return fields.get("aof_rewrite_in_progress") == "1"


def rewrites(fields):
    return int(fields.get("aof_rewrites", -1))


def read_log(path):
    """The records of a checksummed log, checksums checked and removed."""
    with open(path, "rb") as f:
        body = f.read()
    if not body.startswith(HEADER):
        raise ValueError(path + " does not start with the header")
    pos, out = len(HEADER), []
    while pos < len(body):
        start = pos
        end = body.index(b"\r\n", pos)
        count = int(body[pos + 1:end])
        pos, args = end + 2, []
        for _ in range(count):
            end = body.index(b"\r\n", pos)
            n = int(body[pos + 1:end])
            if count - len(args) == 1:
                last = pos
            args.append(body[end + 2:end + 2 + n])
            pos = end + 4 + n
        if b"%08x" % zlib.crc32(body[start:last]) != args[-1]:
            raise ValueError("%s: a bad checksum at byte %d" % (path, start))
        out.append(args[:-1])
    return out


def replay(records):
    """What a log holds: {key: (value, pxat or None)}, expired keys left out."""
    now = int(time.time() * 1000)
    state = {}
    for r in records:
        key = r[1].decode()
        if r[0] == b"DEL" or (len(r) == 5 and int(r[4]) <= now):
            state.pop(key, None)
        else:
            state[key] = (r[2].decode(), int(r[4]) if len(r) == 5 else None)
    return state


class Model:
    """Random writes of every kind the log records, and what they leave."""

    def __init__(self, seed, nkeys):
        self.rnd = random.Random(seed)
        self.keys = ["k%05d" % i for i in range(nkeys)]
        self.values = {}   # key: expected value (None: absent)
        self.ttl = set()   # keys set with a long deadline (the log must keep it)
        self.fleeting = set()  # keys last set with PX 1: maybe still there for a moment
        self.serial = 0
        self.writes = 0    # commands that wrote a record (an uncompacted log holds that many)

    def fill(self, conn, tag):
        """Sets every key (MSET, pipelined): the log grows by the store's size."""
        cmds = []
        for start in range(0, len(self.keys), 1000):
            chunk = self.keys[start:start + 1000]
            cmds.append(["MSET"] + [x for k in chunk for x in (k, "%s-%s" % (tag, k))])
            for k in chunk:
                self.values[k] = "%s-%s" % (tag, k)
                self.ttl.discard(k)
        self.writes += len(self.keys)
        return all(r == "OK" for r in conn.pipeline(cmds))

    def batch(self, conn, n):
        """n random writes, pipelined; returns False if a reply is not the expected one."""
        cmds, expect = [], []
        for _ in range(n):
            self.serial += 1
            key = self.rnd.choice(self.keys) if self.rnd.random() < 0.8 else "new%d" % self.serial
            kind = self.rnd.randrange(6)
            # A key set with PX 1 may still be there for a millisecond or
            # two (Redis expires it once now > its deadline): until it is
            # written again, what GET and DEL see of it is not checked.
            fleeting = key in self.fleeting
            self.fleeting.discard(key)
            if kind == 0:
                cmds.append(("SET", key, "s%d" % self.serial))
                self.values[key], res = "s%d" % self.serial, "OK"
                self.ttl.discard(key)
            elif kind == 1:
                cmds.append(("DEL", key))
                res = "?" if fleeting else 1 if self.values.get(key) is not None else 0
                self.values[key] = None
                self.ttl.discard(key)
            elif kind == 2:
                key = "ctr%d" % self.rnd.randrange(10)
                cmds.append(("INCR", key))
                res = int(self.values.get(key) or 0) + 1
                self.values[key] = str(res)
            elif kind == 3:
                cmds.append(("SET", key, "e%d" % self.serial, "EX", "100000"))
                self.values[key], res = "e%d" % self.serial, "OK"
                self.ttl.add(key)
            elif kind == 4:
                cmds.append(("SET", key, "p%d" % self.serial, "PX", "1"))  # gone by the check
                self.values[key], res = None, "OK"
                self.ttl.discard(key)
                self.fleeting.add(key)
            else:
                cmds.append(("GET", key))
                res = "?" if fleeting else self.values.get(key, "?")
                if fleeting:
                    self.fleeting.add(key)  # a read does not settle it
            self.writes += kind not in (1, 5) or res == 1
            expect.append(res)
        got = conn.pipeline(cmds)
        return all(e == "?" or g == e for g, e in zip(got, expect))

    def check_restart(self, data, what):
        """Restarts a 1-shard server on `data`: every key as the model says, and DBSIZE the live count."""
        srv = Server(data, "--shards", "1")
        c = Conn(srv.port)
        bad, live = self.wrong(c)
        size = c.cmd("DBSIZE")
        check(what, not bad and size == live, (bad[:5], size, live))
        c.close()
        srv.stop()

    def wrong(self, conn):
        """The keys whose value differs from the model's, and the live count."""
        keys = sorted(self.values)
        bad = []
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            bad += [(k, v, self.values[k]) for k, v in zip(chunk, conn.cmd("MGET", *chunk)) if v != self.values[k]]
        return bad, sum(v is not None for v in self.values.values())


def in_rewrite(conn, model, tag, seconds=15):
    """Overwrites the model's keys until INFO shows a rewrite in progress (the log doubles, the next tick starts
    one); returns INFO's fields then, or None."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        model.fill(conn, tag)
        until = time.monotonic() + 0.3  # a few ticks: if none starts a rewrite, the log has not doubled yet
        while time.monotonic() < until:
            fields = info(conn)
            if rewriting(fields):
                return fields
    return None


def rewrite_in_steps():
    """A rewrite in progress (1 key per step) does not stop the shard: other clients are answered meanwhile."""
    data = new_dir()
    config = small_rewrite_config(data, chunk=1)
    srv = Server(data, "--config", config, "--shards", "1")
    c, other = Conn(srv.port), Conn(srv.port)
    model = Model(1, 20000)
    interleaved = answered = 0
    for attempt in range(10):
        before = in_rewrite(c, model, "t%d" % attempt)
        if before is None:
            break
        ok = (other.cmd("GET", "k00001") == model.values["k00001"] and other.cmd("SET", "probe", attempt) == "OK"
              and other.cmd("GET", "probe") == str(attempt))
        model.values["probe"] = str(attempt)
        answered += ok
        after = info(c)
        interleaved += ok and rewriting(after) and rewrites(after) == rewrites(before)
        if interleaved >= 3:
            break
    check("rewrite in steps: GET and SET from another client are answered between two INFOs that show the same"
          " rewrite in progress (%d times, %d answered)" % (interleaved, answered), interleaved >= 3)
    check("rewrite in steps: the rewrites finish (INFO aof_rewrites)",
          wait_for(lambda: rewrites(info(c)) >= 1 and not rewriting(info(c)), 30), info(c).get("aof_rewrites"))
    stopped_midway = in_rewrite(c, model, "stop") is not None
    c.close()
    other.close()
    srv.stop()
    leftovers = [f for f in os.listdir(data) if f.endswith(".rewrite")]
    check("rewrite in steps: a stop in the middle of a rewrite leaves no temporary file", stopped_midway and not leftovers,
          leftovers)
    model.check_restart(data, "rewrite in steps: after that stop every key is back")
    os.unlink(config)
    shutil.rmtree(data, ignore_errors=True)


def writes_during_rewrite():
    """SET, overwrite, DEL, INCR, SET EX/PX while a rewrite runs: the new log holds exactly the final state."""
    data = new_dir()
    config = small_rewrite_config(data, chunk=1)
    srv = Server(data, "--config", config, "--shards", "1")
    c = Conn(srv.port)
    model = Model(2, 20000)
    during = 0       # batches of writes with the same rewrite in progress before and after them
    replies_ok = True
    last = None      # aof_rewrites while the last such batch ran
    model.fill(c, "a")
    model.fill(c, "b")  # the log holds every key at least twice
    for attempt in range(10):
        before = in_rewrite(c, model, "f%d" % attempt)
        if before is None:
            break
        while True:
            replies_ok = model.batch(c, 20) and replies_ok
            after = info(c)
            if not (rewriting(after) and rewrites(after) == rewrites(before)):
                break
            during += 1
            last = rewrites(before)
        if during >= 5:
            break
    finished = last is not None and wait_for(lambda: rewrites(info(c)) > last, 30)
    check("writes during a rewrite: %d batches of writes ran inside a rewrite, which then finished" % during,
          during >= 5 and finished, info(c))
    check("writes during a rewrite: every reply was the expected one", replies_ok)
    wait_for(lambda: not rewriting(info(c)), 30)
    c.close()
    srv.stop()
    try:
        records = read_log(log_path(data))
    except ValueError as e:
        records = [[b"SET", b"unreadable", str(e).encode()]]
    # (That a rewrite compacts is rewrite()'s check: here, on a slow build,
    # rewrites follow each other and every write goes to both logs, so the
    # count of records proves nothing.)
    state = replay(records)
    expect = {k: v for k, v in model.values.items() if v is not None}
    got = {k: v for k, (v, _) in state.items()}
    check("writes during a rewrite: the log replays to exactly the values written (%d keys)" % len(expect),
          got == expect, sorted(set(got.items()) ^ set(expect.items()))[:5])
    lost = [k for k in model.ttl if model.values.get(k) is not None and (k not in state or state[k][1] is None)]
    check("writes during a rewrite: keys set with EX keep their deadline in the log", not lost, lost[:5])
    model.check_restart(data, "writes during a rewrite: after a restart every key has its value")
    os.unlink(config)
    shutil.rmtree(data, ignore_errors=True)


def rewrite_fails():
    """A rewrite that cannot create its file is abandoned with a warning; the shard goes on, and retries later."""
    data = new_dir()
    config = small_rewrite_config(data)
    srv = Server(data, "--config", config, "--shards", "1")
    c = Conn(srv.port)
    blocker = log_path(data) + ".rewrite"
    os.mkdir(blocker)  # open(2) of it for writing fails (EISDIR)
    model = Model(4, 2000)
    model.fill(c, "a")
    model.fill(c, "b")
    warned = wait_for(lambda: "the rewrite of %s failed" % log_path(data) in srv.output(), 10)
    check("a failing rewrite: a warning names the log and the error", warned and "Is a directory" in srv.output(),
          srv.output()[-500:])
    ok = model.batch(c, 50)
    check("a failing rewrite: the shard goes on serving", ok and c.cmd("GET", "k00001") == model.values["k00001"])
    os.rmdir(blocker)
    check("a failing rewrite: it is tried again later, and succeeds",
          wait_for(lambda: rewrites(info(c)) >= 1 and not rewriting(info(c)), 30), info(c))
    c.close()
    srv.stop()
    model.check_restart(data, "a failing rewrite: every key is back after a restart")
    os.unlink(config)
    shutil.rmtree(data, ignore_errors=True)


def kill9_during_rewrite():
    """kill -9 in the middle of a rewrite, or just after one that took writes, appendfsync always: every
    acknowledged write is back, and the .rewrite file left behind is no log."""
    data = new_dir()
    config = small_rewrite_config(data, fsync="always", chunk=1)
    model = Model(3, 3000)
    tmp = log_path(data) + ".rewrite"
    midway = after = 0
    ok = True
    for cycle in range(12):
        srv = Server(data, "--config", config, "--shards", "1")
        c = Conn(srv.port)
        before = in_rewrite(c, model, "c%d" % cycle)
        ok = model.batch(c, 20) and ok  # acknowledged writes while the rewrite goes on
        wait_end = cycle % 2 == 1  # every other cycle: the kill comes after the rewrite's end
        ended = before is not None and wait_end and wait_for(lambda: rewrites(info(c)) > rewrites(before), 30)
        srv.kill()
        c.close()
        left = os.path.exists(tmp)  # only a rewrite in progress leaves it
        midway += before is not None and not wait_end and left
        after += ended
        srv = Server(data, "--shards", "1")
        c = Conn(srv.port)
        bad, live = model.wrong(c)
        if bad or c.cmd("DBSIZE") != live:
            ok = False
            check("kill -9 %s a rewrite, cycle %d: every acknowledged write is back" %
                  ("after" if wait_end else "during", cycle), False, (bad[:5], c.cmd("DBSIZE"), live))
        if left and os.path.exists(tmp):
            ok = False
            check("kill -9 during a rewrite: the leftover .rewrite file is removed at the start", False)
        c.close()
        srv.stop()
        if (midway >= 3 and after >= 2) or before is None:
            break
    check("kill -9 in the middle of a rewrite x%d, after one x%d (appendfsync always): no acknowledged write lost,"
          " %d keys" % (midway, after, sum(v is not None for v in model.values.values())),
          ok and midway >= 3 and after >= 2)
    os.unlink(config)
    shutil.rmtree(data, ignore_errors=True)


def kill9():
    """kill -9 under write load, appendfsync always, rewrites on: no acknowledged write is lost."""
    data = new_dir()
    config = small_rewrite_config(data, fsync="always")
    acked = {}
    counter = 0
    rnd = random.Random(11)
    ok = True
    for cycle in range(3):
        srv = Server(data, "--config", config, "--shards", "2")
        c = Conn(srv.port)
        got = c.cmd("GET", "counter")
        if not (got is not None and counter <= int(got) <= counter + 1) and cycle > 0:
            ok = False
            check("kill -9: the counter survives", False, "%r, acknowledged %d" % (got, counter))
        counter = int(got or 0)
        stop_at = rnd.randrange(200, 600)
        done = threading.Event()

        def writer():
            nonlocal counter
            w = Conn(srv.port)
            i = 0
            try:
                while True:
                    key, val = "c%d:%d" % (cycle, i), "v%d" % rnd.randrange(1000)
                    if w.cmd("SET", key, val) == "OK":
                        acked[key] = val
                    n = w.cmd("INCR", "counter")
                    if isinstance(n, int):
                        counter = n
                    i += 1
                    if i == stop_at:
                        done.set()
            except (ConnectionError, OSError):
                pass
            done.set()

        t = threading.Thread(target=writer)
        t.start()
        done.wait(60)
        srv.kill()  # mid-stream: a write may be half done
        t.join(30)
        c.close()
        srv = Server(data, "--shards", "2")
        c = Conn(srv.port)
        keys = sorted(acked)
        lost = []
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            lost += [k for k, v in zip(chunk, c.cmd("MGET", *chunk)) if v != acked[k]]
        if lost:
            ok = False
            check("kill -9 cycle %d: no acknowledged write lost" % cycle, False, lost[:5])
        c.close()
        srv.stop()
    check("kill -9 x3 with appendfsync always: %d acknowledged writes, none lost" % len(acked), ok and len(acked) > 0)
    os.unlink(config)
    shutil.rmtree(data, ignore_errors=True)


def shard_count():
    data = new_dir()
    srv = Server(data, "--shards", "2")
    c = Conn(srv.port)
    c.pipeline([("SET", "k%d" % i, "v") for i in range(20)])
    c.close()
    srv.stop()
    srv = Server(data, "--shards", "3", expect_fail=True)
    if srv.started:
        srv.stop()
    out = srv.output()
    check("another --shards is refused, with a clear error",
          not srv.started and "written by 2 shards" in out and "--shards 2" in out and data in out, out[-300:])
    os.unlink(os.path.join(data, "kvstore.meta"))  # as a data dir from before the metadata file
    srv = Server(data, "--shards", "4", expect_fail=True)
    if srv.started:
        srv.stop()
    check("... also for a data directory without the metadata file",
          not srv.started and "logs of 2 shards" in srv.output(), srv.output()[-300:])
    srv = Server(data, "--shards", "2")
    c = Conn(srv.port)
    check("the right count starts, with every key", c.cmd("DBSIZE") == 20)
    c.close()
    srv.stop()
    shutil.rmtree(data, ignore_errors=True)


def unsafe_dirs():
    data = new_dir()
    victim = os.path.join(data, "..", os.path.basename(data) + "-victim")
    with open(victim, "wb") as f:
        f.write(b"precious")
    os.symlink(victim, log_path(data))
    srv = Server(data, "--shards", "1", expect_fail=True)
    if srv.started:
        srv.stop()
    check("a log that is a symbolic link is refused", not srv.started and "is a symbolic link" in srv.output()
          and log_path(data) in srv.output(), srv.output()[-300:])
    with open(victim, "rb") as f:
        check("... and its target is untouched", f.read() == b"precious")
    os.unlink(victim)
    os.unlink(log_path(data))
    os.chmod(data, 0o777)
    srv = Server(data, "--shards", "1", expect_fail=True)
    if srv.started:
        srv.stop()
    check("a data directory others can write to is refused, by name",
          not srv.started and ("%s can be written by others (mode 0777)" % data) in srv.output(), srv.output()[-300:])
    shutil.rmtree(data, ignore_errors=True)


def keys_in_chunks():
    """A long KEYS lets other requests of its shard through between chunks."""
    data = new_dir()
    srv = Server(data, "--shards", "1", "--appendfsync", "no")
    c = Conn(srv.port)
    n = 3000  # a dozen chunks
    c.pipeline([("SET", "key:%06d" % i, "v") for i in range(n)])
    got = c.cmd("KEYS", "key:*")
    check("KEYS over many chunks returns every key once", len(got) == n and len(set(got)) == n, len(got))
    # Another client's GETs, one at a time, while one KEYS scans with a
    # pattern that is slow to reject (O(key x pattern) per key) and matches
    # nothing (no reply to build): they are answered meanwhile.
    for start in range(0, 20000, 5000):
        c.pipeline([("SET", "a" * 200 + "%05d" % i, "v") for i in range(start, start + 5000)])
    other = Conn(srv.port)
    other.cmd("PING")
    c.send("KEYS", "*" + "a" * 40 + "b*")
    answered = 0
    c.s.setblocking(False)
    reply = b""
    while True:
        try:
            reply += c.s.recv(100)
        except BlockingIOError:
            pass
        if reply.endswith(b"\r\n"):
            break
        if other.cmd("GET", "key:000001") == "v":
            answered += 1
    c.s.setblocking(True)
    check("KEYS: other requests are answered during a long scan (%d)" % answered, answered >= 5 and reply == b"*0\r\n",
          reply)
    c.close()
    other.close()
    srv.stop()
    shutil.rmtree(data, ignore_errors=True)


def default_data_dir():
    # Without --data the store is the user's own: $XDG_STATE_HOME/otp-kvstore,
    # else ~/.local/state/otp-kvstore (created, mode 0700), never a shared /tmp path.
    home = new_dir()
    for env, expected in [({"HOME": home}, os.path.join(home, ".local", "state", "otp-kvstore")),
                          ({"HOME": home, "XDG_STATE_HOME": os.path.join(home, "st")},
                           os.path.join(home, "st", "otp-kvstore"))]:
        e = {k: v for k, v in os.environ.items() if k not in ("HOME", "XDG_STATE_HOME")}
        e.update(env)
        srv = Server(None, env=e)
        c = Conn(srv.port)
        c.cmd("SET", "k", "v")
        c.close()
        srv.stop()
        check("default data directory with %s: %s" % (sorted(env), expected),
              os.path.isfile(os.path.join(expected, "kvstore.meta")) and "data in " + expected in srv.output(),
              srv.output()[-500:])
        check("default data directory is private", os.path.isdir(expected) and os.stat(expected).st_mode & 0o077 == 0,
              oct(os.stat(expected).st_mode) if os.path.isdir(expected) else "missing")
    shutil.rmtree(home, ignore_errors=True)


OOM = "-OOM command not allowed when used memory > 'maxmemory'."  # redis-server 7.0's text


def info_field(conn, name):
    m = re.search(r"(?m)^%s:(\S+)" % name, conn.cmd("INFO"))
    return m.group(1) if m else None


def used_memory(conn):
    return int(info_field(conn, "used_memory"))


def maxmemory_noeviction():
    data = new_dir()
    srv = Server(data, "--shards", "1", "--maxmemory", "64kb", "--appendfsync", "no")
    c = Conn(srv.port)
    check("maxmemory: CONFIG GET answers as Redis", c.cmd("CONFIG", "GET", "maxmemory") == ["maxmemory", "65536"]
          and c.cmd("CONFIG", "GET", "maxmemory-policy") == ["maxmemory-policy", "noeviction"])
    got = c.pipeline([("SET", "k%04d" % i, "v" * 100) for i in range(1000)])
    first = next((i for i, r in enumerate(got) if r != "OK"), None)
    check("noeviction: writes past 64kb are refused with Redis's OOM error",
          first is not None and first > 100 and all(r == OOM for r in got[first:]), got[first if first else -1])
    limit_ok = used_memory(c) <= 65536 + 400  # at most one entry over
    check("noeviction: used_memory stays at the limit (plus one entry)", limit_ok, used_memory(c))
    check("noeviction: INCR and MSET are refused too",
          c.cmd("INCR", "counter") == OOM and c.cmd("MSET", "a", "1", "b", "2") == OOM and c.cmd("GET", "a") is None)
    check("noeviction: reads still work", c.cmd("GET", "k0000") == "v" * 100 and c.cmd("EXISTS", "k0001") == 1)
    check("noeviction: DEL still works", c.cmd("DEL", *["k%04d" % i for i in range(10)]) == 10)
    check("noeviction: after DEL frees room, SET works again", c.cmd("SET", "again", "1") == "OK"
          and c.cmd("GET", "again") == "1", used_memory(c))
    check("noeviction: nothing was evicted", info_field(c, "evicted_keys") == "0"
          and info_field(c, "maxmemory_policy") == "noeviction" and info_field(c, "maxmemory") == "65536")
    c.close()
    srv.stop()
    shutil.rmtree(data, ignore_errors=True)


def maxmemory_accounting():
    """A value overwritten by a short one is no longer counted (nor held); an MSET over the limit is refused whole."""
    data = new_dir()
    srv = Server(data, "--shards", "1", "--maxmemory", "200kb", "--appendfsync", "no")
    c = Conn(srv.port)
    base = used_memory(c)
    big = c.cmd("SET", "shrink", "b" * 60000) == "OK" and used_memory(c) - base >= 60000
    c.cmd("SET", "shrink", "x")
    check("maxmemory: a 60 KB value overwritten by 'x' no longer counts (%d bytes used)" % (used_memory(c) - base),
          big and used_memory(c) - base < 1000)
    check("maxmemory: SET f <120 KB> fits", c.cmd("SET", "f", "f" * 120000) == "OK")
    # As Redis: a write is refused when memory is over the limit before it,
    # and a command is done whole or not at all.
    check("maxmemory: an MSET begun under the limit is done whole, past it",
          c.cmd("MSET", "x", "x" * 90000, "y", "1") == "OK" and c.cmd("EXISTS", "x", "y") == 2
          and used_memory(c) > 200 * 1024, used_memory(c))
    check("maxmemory: over the limit, an MSET is refused whole", c.cmd("MSET", "z", "1", "w", "2") == OOM
          and c.cmd("EXISTS", "z", "w") == 0)
    check("maxmemory: after a DEL, an MSET is done whole again", c.cmd("DEL", "x") == 1
          and c.cmd("MSET", "z", "1", "w", "2") == "OK" and c.cmd("MGET", "z", "w") == ["1", "2"])
    c.close()
    srv.stop()
    shutil.rmtree(data, ignore_errors=True)


def maxmemory_lru():
    data = new_dir()
    limit = 1 << 20
    srv = Server(data, "--shards", "1", "--maxmemory", "1mb", "--maxmemory-policy", "allkeys-lru", "--appendfsync", "no")
    c = Conn(srv.port)
    hot = ["hot%03d" % i for i in range(100)]
    cold = ["cold%03d" % i for i in range(100)]
    errors = [r for r in c.pipeline([("SET", k, "h" * 100) for k in hot + cold]) if r != "OK"]
    peak = 0
    for rnd in range(40):  # about 10 MB of writes through a 1 MB store; the hot keys read between them
        errors += [r for r in c.pipeline([("SET", "fill%02d:%04d" % (rnd, i), "f" * 100) for i in range(1000)])
                   if r != "OK"]
        errors += [r for r in c.pipeline([("GET", k) for k in hot]) if r != "h" * 100 and r is not None]
        peak = max(peak, used_memory(c))
    check("allkeys-lru: 10x the limit written without an error", not errors, errors[:3])
    check("allkeys-lru: used_memory stays at the limit (plus one entry)", 0 < peak <= limit + 400, peak)
    hot_left = sum(v is not None for v in c.cmd("MGET", *hot))
    cold_left = sum(v is not None for v in c.cmd("MGET", *cold))
    check("allkeys-lru: keys read often survive (%d/100), untouched ones do not (%d/100)" % (hot_left, cold_left),
          hot_left >= 80 and cold_left <= 20)
    evicted = int(info_field(c, "evicted_keys"))
    size = c.cmd("DBSIZE")
    check("allkeys-lru: INFO counts the evictions", evicted >= 30000 and size + evicted == 40200, (evicted, size))
    c.close()
    srv.stop()
    with open(log_path(data), "rb") as f:
        dels = len(re.findall(rb"\$3\r\nDEL\r\n", f.read()))
    check("allkeys-lru: every eviction is logged as a DEL", dels == evicted, (dels, evicted))
    # Replay comes to the same keys, and never evicts, even under a smaller limit.
    for extra in [(), ("--maxmemory", "100kb")]:
        srv = Server(data, "--shards", "1", *extra)
        c = Conn(srv.port)
        check("evictions replay: DBSIZE is %d again after a restart %s" % (size, " ".join(extra) or "without a limit"),
              c.cmd("DBSIZE") == size and sum(v is not None for v in c.cmd("MGET", *hot)) == hot_left,
              c.cmd("DBSIZE"))
        if extra:
            check("... and the first write over it is refused (noeviction)", c.cmd("SET", "x", "y") == OOM)
        c.close()
        srv.stop()
    shutil.rmtree(data, ignore_errors=True)


def maxmemory_volatile():
    for policy in ["volatile-lru", "volatile-ttl", "volatile-random"]:
        data = new_dir()
        srv = Server(data, "--shards", "1", "--maxmemory", "64kb", "--maxmemory-policy", policy, "--appendfsync", "no")
        c = Conn(srv.port)
        got = c.pipeline([("SET", "plain%04d" % i, "v" * 100) for i in range(1000)])
        check("%s without volatile keys: OOM, as noeviction" % policy, OOM in got and got[0] == "OK", got[-1])
        c.close()
        srv.stop()
        shutil.rmtree(data, ignore_errors=True)

        data = new_dir()
        srv = Server(data, "--shards", "1", "--maxmemory", "64kb", "--maxmemory-policy", policy, "--appendfsync", "no")
        c = Conn(srv.port)
        keep = ["keep%03d" % i for i in range(100)]
        c.pipeline([("SET", k, "k" * 40) for k in keep])
        # Deadlines that come nearer as they are written: volatile-ttl frees the last ones first.
        vol = ["vol%04d" % i for i in range(2000)]
        got = c.pipeline([("SET", k, "t" * 100, "EX", 100000 - i) for i, k in enumerate(vol)])
        check("%s: writes past the limit evict volatile keys, without an error" % policy,
              all(r == "OK" for r in got), [r for r in got if r != "OK"][:1])
        vol_left = [v is not None for v in c.cmd("MGET", *vol)]
        check("%s: keys without a deadline are all kept, volatile ones evicted (%d left)" % (policy, sum(vol_left)),
              all(v is not None for v in c.cmd("MGET", *keep)) and 0 < sum(vol_left) < 500)
        if policy == "volatile-ttl":
            check("volatile-ttl: the keys with the farthest deadlines stay", sum(vol_left[:20]) >= 18, vol_left[:20])
        got = c.pipeline([("SET", "plain%04d" % i, "v" * 100) for i in range(1000)])
        check("%s: once no volatile key is left, OOM" % policy,
              OOM in got and c.cmd("DBSIZE") == 100 + got.count("OK")
              and all(v is not None for v in c.cmd("MGET", *keep)), c.cmd("DBSIZE"))
        c.close()
        srv.stop()
        shutil.rmtree(data, ignore_errors=True)


def maxmemory_options():
    data = new_dir()
    for args, named in [(("--maxmemory", "12x"), "--maxmemory"), (("--maxmemory", "-1"), "--maxmemory"),
                        (("--maxmemory", "1.5mb"), "--maxmemory"),
                        (("--maxmemory-policy", "allkeys-lfu"), "--maxmemory-policy")]:
        srv = Server(data, *args, expect_fail=True)
        if srv.started:
            srv.stop()
        check("%s %s: exit code 2, the option and the value named" % args,
              not srv.started and srv.proc.returncode == 2 and named in srv.output() and args[1] in srv.output(),
              (srv.proc.returncode, srv.output()[-300:]))
    # Units as Redis's memtoull: k = 1000, kb = 1024, any case.
    for value, expected in [("1m", "1000000"), ("1MB", "1048576"), ("2gb", str(2 << 30)), ("0", "0")]:
        srv = Server(data, "--shards", "1", "--maxmemory", value)
        c = Conn(srv.port)
        got = c.cmd("CONFIG", "GET", "maxmemory")
        check("--maxmemory %s is %s bytes" % (value, expected), got == ["maxmemory", expected], got)
        c.close()
        srv.stop()
    # In app.json: the shards' args.
    with open(CONFIG) as f:
        doc = json.load(f)
    shards = next(ch for ch in doc["supervisor"]["children"] if ch["id"] == "shards")
    path = os.path.join(data, "..", os.path.basename(data) + "-app.json")
    for mm, policy, ok in [("100kb", "volatile-ttl", True), (2048, "allkeys-random", True),
                           ("lots", "noeviction", False), ("1mb", "lru", False)]:
        shards["args"]["maxmemory"] = mm
        shards["args"]["maxmemory_policy"] = policy
        with open(path, "w") as f:
            json.dump(doc, f)
        srv = Server(data, "--config", path, "--shards", "1", expect_fail=not ok)
        if ok:
            c = Conn(srv.port)
            got = c.pipeline([("CONFIG", "GET", "maxmemory"), ("CONFIG", "GET", "maxmemory-policy")])
            check("app.json maxmemory %r, %s" % (mm, policy),
                  got == [["maxmemory", "102400" if mm == "100kb" else "2048"], ["maxmemory-policy", policy]], got)
            c.close()
            srv.stop()
        else:
            if srv.started:
                srv.stop()
            bad = "maxmemory_policy" if policy == "lru" else "maxmemory"
            check("app.json maxmemory %r, %s: refused, naming %s" % (mm, policy, bad),
                  not srv.started and srv.proc.returncode != 0 and ("shards: " + bad) in srv.output(),
                  srv.output()[-300:])
    os.unlink(path)
    shutil.rmtree(data, ignore_errors=True)


def startup_errors():
    """A port that cannot be listened on, or a bad value on the command line or in app.json: one clear line, nothing started."""
    data = new_dir()
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    srv = kvtest.Server(BIN, data, "--shards", "1", port=port, expect_fail=True)
    if srv.started:
        srv.stop()
    out = srv.output()
    check("a port in use: exit code 1, the address and the reason named, no crash reports",
          not srv.started and srv.proc.returncode == 1 and ("cannot listen on 127.0.0.1:%d" % port) in out
          and "Address already in use" in out and "crash_report" not in out, (srv.proc.returncode, out[-400:]))
    taken.close()
    for option, value in [("--port", "x"), ("--port", "0"), ("--port", "65536"), ("--port", "99999"),
                          ("--shards", "x"), ("--shards", "0"), ("--shards", "65"), ("--schedulers", "x"),
                          ("--schedulers", "-1"), ("--schedulers", "0"), ("--appendfsync", "sometimes"),
                          ("--data", "")]:
        srv = Server(data, "--shards", "1", option, value, expect_fail=True)
        if srv.started:
            srv.stop()
        out = srv.output()
        check("%s %s: exit code 2, the option and the value named" % (option, value),
              not srv.started and srv.proc.returncode == 2 and option in out and ("'%s'" % value) in out,
              (srv.proc.returncode, out[-300:]))
    # In app.json: the acceptor's args.
    with open(CONFIG) as f:
        doc = json.load(f)
    acceptor = next(ch for ch in doc["supervisor"]["children"] if ch["id"] == "acceptor")
    path = os.path.join(data, "..", os.path.basename(data) + "-app.json")
    for key, value in [("port", 70000), ("port", "6380"), ("host", "localhost:1"), ("host", 7)]:
        acceptor["args"] = {key: value}
        with open(path, "w") as f:
            json.dump(doc, f)
        # No --port: the file's own is the one checked.
        try:
            proc = subprocess.run([BIN, "--config", path, "--data", data, "--shards", "1"], capture_output=True,
                                  text=True, timeout=20)
            out = proc.stdout + proc.stderr
        except subprocess.TimeoutExpired as e:  # it started: killed by run()
            proc, out = e, str(e.stdout)
            proc.returncode = 0
        check("app.json acceptor %s %r: refused, naming acceptor: %s" % (key, value, key),
              proc.returncode != 0 and ("acceptor: " + key) in out and "listening on" not in out, out[-300:])
    os.unlink(path)
    shutil.rmtree(data, ignore_errors=True)


def main():
    started = time.monotonic()
    only = sys.argv[2:]
    for t in [damaged_logs, old_format, everysec, expiry, expire_commands, set_options, string_commands, rewrite,
              rewrite_in_steps, writes_during_rewrite,
              rewrite_fails, kill9_during_rewrite, kill9, shard_count, unsafe_dirs, keys_in_chunks, default_data_dir,
              maxmemory_noeviction, maxmemory_accounting, maxmemory_lru, maxmemory_volatile, maxmemory_options,
              startup_errors]:
        if only and t.__name__ not in only:
            continue
        t0 = time.monotonic()
        try:
            t()
        except Exception as e:  # a test that cannot run is a failure
            check(t.__name__ + " ran to the end", False, repr(e))
        print("  (%s: %.1f s)" % (t.__name__, time.monotonic() - t0))
    print("%.1f s; " % (time.monotonic() - started) + ("%d checks failed" % len(failures) if failures else "all checks passed"))
    sys.exit(1 if failures else 0)


main()
