#!/usr/bin/env python3
"""Memory of samples/kvstore against a real redis-server, side by side.

Three figures, for each server (kvstore with one scheduler, an older kvstore
binary with --before, and redis-server; the same durability: an append-only
log, no fsync):

- connection_bytes: RSS growth per idle client, over 4,000 clients that
  each sent one PING;
- key_bytes: RSS growth per key after SET of 1 M keys (11-byte names,
  100-byte values), pipelined;
- big_value_peak / big_value_idle: the peak RSS growth during SET and GET
  of one 48 MiB value, and what stays once the client is idle, as a
  multiple of the value's size.

Results go to bench/results/ (rows "kvstore_mem_*", impl otp, otp_before,
redis).

usage: kvstore_memory.py --kvstore BIN [--before BIN] [--out FILE]
"""
import argparse
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

from redis_bench import free_port  # bench/, beside this script

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLIENTS = 4000
KEYS = 1_000_000
BIG = 48 << 20


def status(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no %s for pid %d" % (key, pid))


def resp(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


def more_files():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 3 * CLIENTS) if hard != resource.RLIM_INFINITY else 3 * CLIENTS
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))


class Server:
    def __init__(self, cmd, port):
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=more_files)
        self.port = port
        for _ in range(400):
            try:
                socket.create_connection(("127.0.0.1", port)).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    sys.exit("%s exited before it listened" % cmd[0])
                time.sleep(0.02)
        sys.exit("%s did not listen on port %d" % (cmd[0], port))

    def rss(self):
        return status(self.proc.pid, "VmRSS")

    def peak(self):
        return status(self.proc.pid, "VmHWM")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


def ping(port):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"PING\r\n")
    if s.recv(16) != b"+PONG\r\n":
        raise RuntimeError("no PONG")
    return s


def connection_bytes(srv):
    warm = [ping(srv.port) for _ in range(100)]
    before = srv.rss()
    socks = [ping(srv.port) for _ in range(CLIENTS)]
    grown = srv.rss() - before
    for s in socks + warm:
        s.close()
    return grown / CLIENTS


def read_exactly(s, n):
    got = 0
    while got < n:
        chunk = s.recv(min(1 << 20, n - got))
        if not chunk:
            raise RuntimeError("closed")
        got += len(chunk)


def key_bytes(srv):
    before = srv.rss()
    s = socket.create_connection(("127.0.0.1", srv.port))
    value = b"v" * 100
    reader = threading.Thread(target=read_exactly, args=(s, KEYS * len(b"+OK\r\n")))
    reader.start()
    for start in range(0, KEYS, 1000):
        s.sendall(b"".join(resp(b"SET", b"key:%07d" % i, value) for i in range(start, start + 1000)))
    reader.join()
    s.close()
    return (srv.rss() - before) / KEYS


def big_value(srv):
    s = ping(srv.port)
    peak0, rss0 = srv.peak(), srv.rss()
    s.sendall(resp(b"SET", b"big", b"x" * BIG))
    if s.recv(16) != b"+OK\r\n":
        raise RuntimeError("SET failed")
    s.sendall(resp(b"GET", b"big"))
    read_exactly(s, BIG + len(b"$%d\r\n\r\n" % BIG))
    s.sendall(b"PING\r\n")
    s.recv(16)
    peak, idle = srv.peak() - peak0, srv.rss() - rss0
    s.close()
    return peak / BIG, idle / BIG


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kvstore", required=True)
    ap.add_argument("--before")
    ap.add_argument("--out", default=os.path.join(REPO, "bench", "results", "latest.json"))
    args = ap.parse_args()
    if shutil.which("redis-server") is None:
        sys.exit("redis-server not found: make bench-deps installs it")
    more_files()
    data = tempfile.mkdtemp(prefix="kvstore-mem-")
    servers = [("otp", args.kvstore)] + ([("otp_before", args.before)] if args.before else []) + [("redis", None)]
    rows = []
    try:
        for impl, binary in servers:
            figures = {}
            for what in ("connection", "keys", "big"):
                port = free_port()
                if binary:
                    cmd = [binary, "--port", str(port), "--data", os.path.join(data, "%s-%s" % (impl, what)),
                           "--schedulers", "1", "--appendfsync", "no", "--max-clients", str(2 * CLIENTS)]
                else:
                    cmd = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                           "--appendonly", "yes", "--appendfsync", "no", "--dir", data,
                           "--appendfilename", "%s.aof" % what, "--maxclients", str(2 * CLIENTS)]
                srv = Server(cmd, port)
                try:
                    if what == "connection":
                        figures["kvstore_mem_connection_bytes"] = connection_bytes(srv)
                    elif what == "keys":
                        figures["kvstore_mem_key_bytes"] = key_bytes(srv)
                    else:
                        peak, idle = big_value(srv)
                        figures["kvstore_mem_big_value_peak_x"] = peak
                        figures["kvstore_mem_big_value_idle_x"] = idle
                finally:
                    srv.stop()
            for name, v in figures.items():
                print("%-32s %-10s %10.2f" % (name, impl, v), flush=True)
                rows.append({"bench": name, "impl": impl, "value": round(v, 2),
                             "unit": "x the value" if name.endswith("_x") else "bytes", "runs": [round(v, 2)]})
    finally:
        shutil.rmtree(data, ignore_errors=True)
    results = []
    if os.path.exists(args.out):
        with open(args.out) as f:
            results = [r for r in json.load(f) if not r["bench"].startswith("kvstore_mem_")]
    with open(args.out, "w") as f:
        json.dump(results + rows, f, indent=1)
    print("results added to %s" % args.out)


if __name__ == "__main__":
    main()
