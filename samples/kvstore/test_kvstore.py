# SPDX-License-Identifier: Apache-2.0
# Drives samples/kvstore with the real redis-cli and redis-benchmark: every
# command, bad input, crash recovery, restart from the logs, and a bounded
# chaos run that checks no acknowledged write is lost.
#
# usage: test_kvstore.py KVSTORE_BINARY
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

import kvtest
from kvtest import check, failures, free_port

BIN = sys.argv[1]


def cli(port, *args):
    r = subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True, timeout=20)
    return r.stdout.strip()


def raw(port, payload, read=True):
    """Sends raw bytes; returns what the server answers before it closes (or 1 s passes)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(payload)
    out = b""
    if read:
        s.settimeout(1.0)
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
        except socket.timeout:
            pass
    s.close()
    return out


def cli_settled(port, *args, seconds=20):
    """cli() again while the reply is TRYAGAIN (a shard is restarting), as a client is asked to; at most `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        out = cli(port, *args)
        if not out.startswith("TRYAGAIN") or time.monotonic() > deadline:
            return out


def commands(port):
    check("PING", cli(port, "ping") == "PONG")
    check("PING with a message", cli(port, "ping", "hi") == "hi")
    check("ECHO", cli(port, "echo", "hello there") == "hello there")
    check("SET", cli(port, "set", "k1", "v1") == "OK")
    check("SET PX expires", cli(port, "set", "short", "x", "PX", "1") == "OK"
          and any(cli(port, "get", "short") == "" for _ in range(200)))
    check("GET", cli(port, "get", "k1") == "v1")
    check("GET of a missing key is nil", cli(port, "get", "nope") == "")
    check("SET EX", cli(port, "set", "tmp", "x", "EX", "100") == "OK" and cli(port, "get", "tmp") == "x")
    check("SET with a bad option", cli(port, "set", "a", "b", "ZZ", "1").startswith("ERR syntax error"))
    check("EXISTS", cli(port, "exists", "k1", "nope", "tmp") == "2")
    check("DEL", cli(port, "del", "k1", "nope") == "1" and cli(port, "exists", "k1") == "0")
    check("INCR", cli(port, "incr", "n") == "1" and cli(port, "incr", "n") == "2")
    check("INCR of a non-integer", cli(port, "set", "s", "abc") == "OK"
          and cli(port, "incr", "s") == "ERR value is not an integer or out of range")
    check("MSET", cli(port, "mset", "a", "1", "b", "2", "c", "3") == "OK")
    check("MGET", cli(port, "mget", "a", "b", "nope", "c").split("\n") == ["1", "2", "", "3"])
    check("KEYS", sorted(cli(port, "keys", "*").split("\n")) == ["a", "b", "c", "n", "s", "tmp"])
    check("KEYS with a pattern", sorted(cli(port, "keys", "[ab]").split("\n")) == ["a", "b"])
    check("DBSIZE", cli(port, "dbsize") == "6")
    info = cli(port, "info")
    check("INFO lists the shards", "shard_0:keys=" in info and "restarts=0" in info)
    shard_on = re.findall(r"^shard_\d+:keys=\d+,restarts=\d+,scheduler=(\d+)\r?$", info, re.M)
    nsched = re.search(r"^schedulers:(\d+)\r?$", info, re.M)
    sched_rows = re.findall(r"^scheduler_(\d+):active_pct=(\d+),run_queue=\d+,processes=(\d+),migrated_in=\d+,"
                            r"migrated_out=\d+,compacted_out=\d+,hungry=[01],contended=[01],others_on_core_pct=(?:\d+|unknown),"
                            r"leaving=[01],cpu=(?:\d+|none),io_bound=\d+\r?$", info, re.M)
    check("INFO says where each shard runs, and each scheduler's load",
          nsched is not None and len(shard_on) == 4 and all(int(s) < int(nsched.group(1)) for s in shard_on)
          and [int(r[0]) for r in sched_rows] == list(range(int(nsched.group(1))))
          and all(int(r[1]) <= 100 for r in sched_rows) and sum(int(r[2]) for r in sched_rows) > 4, info)
    check("unknown command", cli(port, "frobnicate", "x").startswith("ERR unknown command 'frobnicate'"))
    check("wrong arity", cli(port, "get") == "ERR wrong number of arguments for 'get' command")
    check("MSET with an odd count", cli(port, "mset", "a") == "ERR wrong number of arguments for 'mset' command")
    check("QUIT closes", raw(port, b"QUIT\r\n") == b"+OK\r\n")
    check("inline commands work", raw(port, b"PING\r\n", read=True).startswith(b"+PONG"))
    pipelined = b"".join(b"*3\r\n$3\r\nSET\r\n$%d\r\np%d\r\n$1\r\n%d\r\n" % (len(b"p%d" % i), i, i % 10)
                         for i in range(100)) + b"QUIT\r\n"
    check("pipelining: 100 SETs in one write", raw(port, pipelined) == b"+OK\r\n" * 101)


def bad_input(port):
    check("malformed RESP gets a protocol error and a closed connection",
          raw(port, b"*2\r\n$3\r\nGET\r\n:1\r\n") == b"-ERR Protocol error: expected '$', got ':'\r\n")
    check("an oversized bulk string is refused",
          raw(port, b"*1\r\n$999999999999\r\n") == b"-ERR Protocol error: invalid bulk length\r\n")
    check("a bad multibulk length is refused",
          raw(port, b"*abc\r\n") == b"-ERR Protocol error: invalid multibulk length\r\n")
    # A client that disconnects in the middle of a command.
    raw(port, b"*3\r\n$3\r\nSET\r\n$3\r\nhal", read=False)
    check("a client that disconnects mid-command does not hurt the server", cli(port, "ping") == "PONG")
    check("the half-sent write was not applied", cli(port, "exists", "hal") == "0")
    check("a crashed connection closes only its own socket",
          raw(port, b"DEBUG CRASH CONNECTION\r\n") == b"" and cli(port, "ping") == "PONG")


def crash_recovery(port):
    for i in range(50):
        cli(port, "set", "crash:%d" % i, "v%d" % i)
    for shard in range(4):
        check("DEBUG CRASH %d answers OK" % shard, cli(port, "debug", "crash", str(shard)) == "OK")
    # DEBUG CRASH answers at once; a shard still restarting answers TRYAGAIN.
    values = cli_settled(port, "mget", *["crash:%d" % i for i in range(50)]).split("\n")
    check("every key survives the crash of every shard", values == ["v%d" % i for i in range(50)], values[:3])
    info = cli(port, "info")
    check("INFO counts the restarts", all("shard_%d:" % s in info and "restarts=1" in info for s in range(4)),
          info)


def chaos(port, seconds=3.0):
    """redis-benchmark load, shards crashing, clients dying mid-command; then every acknowledged write is read."""
    stop = threading.Event()
    acked = {}

    def writer(wid):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        f = s.makefile("rb")
        i = 0
        while not stop.is_set():
            key, val = "chaos:%d:%d" % (wid, i), "v%d" % i
            s.sendall(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(key), key.encode(), len(val), val.encode()))
            line = f.readline()
            if line == b"+OK\r\n":
                acked[key] = val
            elif not line.startswith(b"-TRYAGAIN"):
                raise RuntimeError("unexpected reply %r" % line)
            i += 1
        s.close()

    def crasher():
        rnd = random.Random(7)
        while not stop.is_set():
            cli(port, "debug", "crash", str(rnd.randrange(4)))
            raw(port, b"*3\r\n$3\r\nSET\r\n$4\r\nhalf", read=False)  # a client dying mid-command
            raw(port, b"DEBUG CRASH CONNECTION\r\n")  # a connection process crashing
            stop.wait(0.05)

    bench = subprocess.Popen(["redis-benchmark", "-p", str(port), "-t", "set,get", "-n", "10000000", "-c", "8",
                              "-P", "4", "-q", "-r", "1000"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    threads = [threading.Thread(target=writer, args=(w,)) for w in range(3)] + [threading.Thread(target=crasher)]
    for t in threads:
        t.start()
    stop.wait(seconds)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    bench.terminate()
    bench.wait(timeout=10)
    keys = sorted(acked)
    lost = []
    for start in range(0, len(keys), 200):
        chunk = keys[start:start + 200]
        got = cli_settled(port, "mget", *chunk).split("\n")
        lost += [k for k, v in zip(chunk, got) if v != acked[k]]
    check("chaos: %d acknowledged writes, none lost" % len(keys), len(keys) > 0 and not lost,
          "lost %d, e.g. %s" % (len(lost), lost[:3]))
    check("chaos: the server still answers", cli(port, "ping") == "PONG")


def main():
    data = tempfile.mkdtemp(prefix="kvstore-test-")
    try:
        port = free_port()
        server = kvtest.Server(BIN, data, "--admin", port=port)
        commands(port)
        bad_input(port)
        crash_recovery(port)
        chaos(port)
        check("SIGTERM stops the tree in order, exit code 0", server.stop() == 0)
        # The logs bring everything back after a full restart.
        server = kvtest.Server(BIN, data, port=port)
        check("a restarted server reads its logs back", cli(port, "get", "crash:7") == "v7"
              and cli(port, "get", "p42") == "2")
        check("DEBUG CRASH is off unless enabled", cli(port, "debug", "crash", "0").startswith("ERR unknown command"))
        server.stop()
        # As `taskset -c K kvstore`: one CPU allowed, one scheduler, pinned there.
        last = max(os.sched_getaffinity(0))
        server = kvtest.Server(BIN, data, port=port, cpus={last})
        info = cli(port, "info")
        check("under taskset, one scheduler per CPU of the mask, pinned to it",
              re.search(r"^schedulers:1\r?$", info, re.M) is not None
              and re.search(r"^scheduler_0:.*,cpu=%d,io_bound=" % last, info, re.M) is not None, info)
        server.stop()
    finally:
        shutil.rmtree(data, ignore_errors=True)
    print("%d checks failed" % len(failures) if failures else "all checks passed")
    sys.exit(1 if failures else 0)


main()
