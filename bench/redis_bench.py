#!/usr/bin/env python3
"""redis-benchmark against samples/kvstore and a real redis-server, side by side.

Both servers run on loopback in the same run, with the same durability (an
append-only log, fsync every second), and kvstore twice: with one scheduler, like redis-server's event loop, and
with the default (one scheduler per core, connections placed by the runtime's
load balancing; on a 2-core machine they compete with redis-benchmark for the
cores). For SET and GET, with and without
pipelining (-P 16), each server is measured --runs times, alternating; the
medians go into the results file as rows with impl "otp" (kvstore, one
scheduler), "otp_default" (kvstore, default schedulers) and "redis"
(redis-server).

With --before BIN (an older kvstore binary), it runs too, with one
scheduler, as impl "otp_before": a change is measured against its base in
the same run. With --redis-io-threads N, redis-server with N I/O threads
runs too (impl "redis_io_threads"), the fair match for kvstore on many cores.

On a many-core machine, give the servers and the load generator cores of
their own: --schedulers N (kvstore's default row), --server-cores and
--client-cores (taskset lists), --client-threads and --clients (e.g.
--schedulers 8 --redis-io-threads 8 --server-cores 0-7 --client-cores 8-15
--client-threads 8 --clients 400; scripts/device-run.sh does this).

A pipelined row sends --requests-pipelined requests (default 2,000,000),
ten times an unpipelined row's: at 200,000 it lasted 0.15-0.3 s, mostly
its start (50 connections placed, the core watch's first readings), and
the per-round ratio of two kvstore binaries spread from 0.56 to 1.24.

usage: redis_bench.py --kvstore BIN [--before BIN] [--runs 3] [--requests 200000]
                      [--requests-pipelined 2000000] [--out FILE]
"""
import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_ready(port, proc, what):
    """Waits until the server answers PING (it prints nothing we could wait on)."""
    for _ in range(500):
        if proc.poll() is not None:
            sys.exit(f"{what} exited before it answered")
        r = subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True)
        if r.stdout.strip() == "PONG":
            return
        time.sleep(0.02)
    sys.exit(f"{what} did not answer on port {port}")


# kvstore's schedulers are pinned (scheduler i on the i-th CPU we may use):
# with one scheduler it runs on the first. redis-server's thread is put there
# too, and redis-benchmark on the last, so that no server shares its core with
# the client in some runs and not in others (that made the medians bimodal).
def pin(cores):
    """taskset's prefix for a core list ("8-15"), or none without taskset."""
    return ["taskset", "-c", cores] if cores and shutil.which("taskset") else []


# The CPUs we may use (kvstore pins scheduler i on the i-th of them).
CPUS = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
CORES = len(CPUS)
PIN_SERVER = pin(str(CPUS[0])) if CORES > 1 else []
PIN_CLIENT = pin(str(CPUS[-1])) if PIN_SERVER else []


def bench(port, test, pipeline, requests, client=None):
    client = client or {}
    cmd = client.get("pin", PIN_CLIENT) + ["redis-benchmark", "-p", str(port), "-t", test, "-n", str(requests),
                                           "-c", str(client.get("clients", 50)), "-r", "100000", "-q"]
    if client.get("threads", 1) > 1:
        cmd += ["--threads", str(client["threads"])]
    if pipeline > 1:
        cmd += ["-P", str(pipeline)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300).stdout
    m = re.search(r"%s: ([0-9.]+) requests per second" % test.upper(), out.replace("\r", "\n"))
    if not m:
        sys.exit(f"could not read redis-benchmark's output: {out[-300:]}")
    return float(m.group(1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kvstore", required=True)
    ap.add_argument("--before", help="an older kvstore binary, measured alongside (one scheduler)")
    ap.add_argument("--tests", default="set,get", help="redis-benchmark tests, comma-separated")
    ap.add_argument("--redis-io-threads", type=int, default=0,
                    help="also run redis-server with this many I/O threads (impl redis_io_threads)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--requests", type=int, default=200000)
    ap.add_argument("--requests-pipelined", type=int, default=2000000,
                    help="requests of a pipelined row (-P 16)")
    ap.add_argument("--out", default=os.path.join(REPO, "bench", "results", "latest.json"))
    ap.add_argument("--schedulers", type=int, default=0,
                    help="schedulers of the otp_default row (default: the node's, one per core)")
    ap.add_argument("--server-cores", default="", help="taskset list for redis-server with I/O threads")
    ap.add_argument("--client-cores", default="", help="taskset list for redis-benchmark (default: the last core)")
    ap.add_argument("--client-threads", type=int, default=1, help="redis-benchmark --threads")
    ap.add_argument("--clients", type=int, default=50, help="redis-benchmark -c")
    args = ap.parse_args()
    client = {"clients": args.clients, "threads": args.client_threads,
              "pin": pin(args.client_cores) if args.client_cores else PIN_CLIENT}
    for tool in ("redis-server", "redis-benchmark", "redis-cli"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found: make bench-deps installs redis-server and redis-tools")

    data = tempfile.mkdtemp(prefix="redis-bench-")
    kv_port, kvd_port, redis_port = free_port(), free_port(), free_port()
    kv = subprocess.Popen([args.kvstore, "--port", str(kv_port), "--data", os.path.join(data, "kv"),
                           "--appendfsync", "everysec", "--schedulers", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kvd = subprocess.Popen([args.kvstore, "--port", str(kvd_port), "--data", os.path.join(data, "kvd"),
                            "--appendfsync", "everysec"] + (["--schedulers", str(args.schedulers)] if args.schedulers else []),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    redis = subprocess.Popen(PIN_SERVER + ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "yes", "--appendfsync", "everysec", "--dir", data],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    servers = [("otp", kv_port, kv), ("otp_default", kvd_port, kvd), ("redis", redis_port, redis)]
    if args.redis_io_threads > 1:
        rio_port = free_port()
        rio = subprocess.Popen(pin(args.server_cores) + ["redis-server", "--port", str(rio_port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "yes", "--appendfsync", "everysec", "--dir", data,
                                "--appendfilename", "io.aof", "--io-threads", str(args.redis_io_threads),
                                "--io-threads-do-reads", "yes"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        servers.append(("redis_io_threads", rio_port, rio))
    if args.before:
        before_port = free_port()
        before = subprocess.Popen([args.before, "--port", str(before_port), "--data", os.path.join(data, "before"),
                                   "--appendfsync", "everysec", "--schedulers", "1"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        servers.insert(1, ("otp_before", before_port, before))
    rows = []
    try:
        for impl, port, proc in servers:
            wait_ready(port, proc, impl)
        for test in args.tests.split(","):
            for pipeline in (1, 16):
                name = f"kvstore_{test}{'_pipelined' if pipeline > 1 else ''}_per_s"
                got = {impl: [] for impl, _, _ in servers}
                for r in range(args.runs):
                    for impl, port, _ in servers:
                        v = bench(port, test, pipeline, args.requests_pipelined if pipeline > 1 else args.requests, client)
                        got[impl].append(v)
                        print(f"{name:34} {impl:11} run {r + 1}/{args.runs}: {v:,.0f}", flush=True)
                for impl, vals in got.items():
                    rows.append({"bench": name, "impl": impl, "value": statistics.median(vals),
                                 "unit": "requests_per_s", "runs": vals})
    finally:
        for _, _, p in servers:
            p.terminate()
            p.wait(timeout=20)
        shutil.rmtree(data, ignore_errors=True)

    results = []
    if os.path.exists(args.out):
        with open(args.out) as f:
            # Only the rows measured here are replaced (kvstore_memory.py's stay).
            ours = {r["bench"] for r in rows}
            results = [r for r in json.load(f) if r["bench"] not in ours]
    results += rows
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)
    print(f"results added to {args.out}")


if __name__ == "__main__":
    main()
