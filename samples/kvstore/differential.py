#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# Random pipelines of the key commands (SET with its options, SETNX,
# GETSET, GET, GETDEL, STRLEN, DEL, EXISTS, INCR/DECR/INCRBY/DECRBY, TTL,
# PTTL, EXPIRE/PEXPIRE with NX/XX/GT/LT, EXPIREAT/PEXPIREAT, PERSIST) sent
# to samples/kvstore and to a real redis-server (Debian's redis-server:
# `make bench-deps`), on loopback; every reply is compared.
# Times are kept away from the present (seconds, or past), so that the two
# servers, asked milliseconds apart, see the same keys expired; a TTL may
# differ by one second. Exits 1 on any difference.
#
# usage: differential.py KVSTORE_BINARY [SEED] [ROUNDS]
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from kvtest import free_port, resp


class Conn:
    def __init__(self, port):
        for _ in range(200):
            try:
                self.s = socket.create_connection(("127.0.0.1", port), timeout=30)
                break
            except OSError:
                time.sleep(0.02)  # the server is still starting
        else:
            sys.exit("nothing listens on port %d" % port)
        self.f = self.s.makefile("rb")

    def reply(self):
        line = self.f.readline()
        if line[:1] == b"$":
            n = int(line[1:])
            return None if n < 0 else self.f.read(n + 2)[:-2]
        if line[:1] == b"*":
            return [self.reply() for _ in range(int(line[1:]))]
        if line[:1] == b":":
            return int(line[1:])
        return line[:-2]

    def pipeline(self, commands):
        self.s.sendall(b"".join(resp(*c) for c in commands))
        return [self.reply() for _ in commands]


def random_command(rng, keys):
    k = rng.choice(keys)
    x = rng.random()
    if x < 0.1:
        return ("SET", k, "v%d" % rng.randint(0, 9)) + (("EX", str(rng.randint(50, 5000))) if rng.random() < 0.3 else ())
    if x < 0.2:
        c = ["SET", k, str(rng.randint(-3, 30))]
        for _ in range(rng.randint(0, 3)):
            o = rng.choice(["NX", "XX", "GET", "KEEPTTL", "EX", "PX", "EXAT", "PXAT", "nx", "get"])
            c.append(o)
            if o in ("EX", "PX", "EXAT", "PXAT") and rng.random() < 0.9:
                c.append(str(rng.choice([rng.randint(-2, 0), rng.randint(2000, 100000), 1,
                                         int(time.time()) + rng.choice([-5, -2, 50, 500]), "z"])))
        return tuple(c)
    if x < 0.4:
        c = [rng.choice(["EXPIRE", "PEXPIRE"]), k,
             str(rng.choice([rng.randint(-5, 0), rng.randint(2000, 5000), rng.randint(1000, 9000000), "x"]))]
        c += [rng.choice(["NX", "XX", "GT", "LT", "nx", "gt"]) for _ in range(rng.choice([0, 0, 1, 1, 2]))]
        return tuple(c)
    if x < 0.45:
        now = int(time.time())
        c = rng.choice([["EXPIREAT", k, str(now + rng.choice([-10, 100, 5000]))],
                        ["PEXPIREAT", k, str((now + rng.choice([-10, 100, 5000])) * 1000)]])
        c += [rng.choice(["NX", "XX", "GT", "LT", "nx", "gt"]) for _ in range(rng.choice([0, 0, 1, 1, 2]))]
        return tuple(c)
    if x < 0.6:
        return (rng.choice(["TTL", "PTTL"]), k)
    if x < 0.7:
        return ("PERSIST", k)
    if x < 0.8:
        return rng.choice([("GET", k), ("STRLEN", k), ("GETDEL", k), ("SETNX", k, "n%d" % rng.randint(0, 9)),
                           ("GETSET", k, str(rng.randint(0, 9)))])
    if x < 0.85:
        return ("DEL", k)
    if x < 0.9:
        return rng.choice([("INCR", k), ("DECR", k), ("INCRBY", k, str(rng.randint(-50, 50))),
                           ("DECRBY", k, rng.choice(["7", "-3", "x", "9223372036854775807"]))])
    return ("EXISTS", k)


def same(cmd, a, b):
    if a == b:
        return True
    if cmd[0] in ("TTL", "PTTL") and isinstance(a, int) and isinstance(b, int) and min(a, b) >= 0:
        return abs(a - b) <= (1 if cmd[0] == "TTL" else 1000)
    return False


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__ or "usage: differential.py KVSTORE_BINARY [SEED] [ROUNDS]")
    binary = sys.argv[1]
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 300
    if shutil.which("redis-server") is None:
        sys.exit("redis-server not found: make bench-deps installs it")
    data = tempfile.mkdtemp(prefix="kvstore-diff-")
    kv_port, redis_port = free_port(), free_port()
    kv = subprocess.Popen([binary, "--port", str(kv_port), "--data", os.path.join(data, "kv")],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    redis = subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                              "--dir", data], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        a, b = Conn(kv_port), Conn(redis_port)
        rng = random.Random(seed)
        keys = ["k%d" % i for i in range(8)]
        total = diffs = 0
        for _ in range(rounds):
            cmds = [random_command(rng, keys) for _ in range(rng.randint(1, 20))]
            for cmd, x, y in zip(cmds, a.pipeline(cmds), b.pipeline(cmds)):
                total += 1
                if not same(cmd, x, y):
                    diffs += 1
                    if diffs <= 10:
                        print("DIFFERENT: %s -> kvstore %r, redis-server %r" % (" ".join(cmd), x, y))
        print("seed %d: %d commands, %d differences" % (seed, total, diffs))
    finally:
        kv.terminate()
        redis.terminate()
        kv.wait(timeout=30)
        redis.wait(timeout=30)
        shutil.rmtree(data, ignore_errors=True)
    sys.exit(1 if diffs else 0)


main()
