#!/usr/bin/env python3
"""Scaling of "natural code": each program at 1 scheduler and at N.

The programs (bench/otp_bench.cpp, bench/erlang/otp_bench.erl) spawn plainly,
with no scheduler option; the scheduler count is the only knob:

    otp     OTP_BENCH_SCHEDULERS=N build-release/bench/otp_bench NAME
    erlang  erl -noshell -pa DIR +S N:N [flags] -run otp_bench main NAME
    caf     CAF_BENCH_THREADS=N <build>/caf_bench NAME   (if it lists NAME)

Every (program, implementation, scheduler count) is run --runs times
(interleaved, so that a drift of the machine hits all alike); the median is
reported, with the speed-up against 1 scheduler. Building and locating the
implementations is bench/run.py's; a missing one is skipped with a warning.

Examples (from the repository root):
    python3 bench/scaling.py                          # 1 and one per core
    python3 bench/scaling.py --schedulers 1,2,4,8,16 --runs 5
    python3 bench/scaling.py --only workers --impl otp
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as bench  # noqa: E402  (bench/run.py)

# name: the invocation; result: the RESULT line it prints; erl: extra flags.
PROGRAMS = [
    dict(name="workers", result="scale_workers_ms", unit="ms", erl=[]),
    # Up to ~1.1M processes alive at once: raise Erlang's process limit.
    dict(name="skynet_plain", result="scale_skynet_ms", unit="ms",
         erl=["+P", "2097152"]),
    # The second of two skynets in one run: the pools (Erlang's carriers)
    # of the first serve it, so it shows the sharing without first touch.
    dict(name="skynet_warm", result="scale_skynet_warm_ms", unit="ms",
         erl=["+P", "2097152"]),
    # otp only: the kernel paging in as much fresh memory as skynet_plain
    # touches, from as many pinned threads; its speed-up bounds skynet's.
    dict(name="page_in", result="scale_page_in_ms", unit="ms", erl=[]),
    dict(name="ping_pong_pairs", result="scale_ping_pong_pairs_msgs_per_s",
         unit="msgs_per_s", erl=[]),
    dict(name="gen_server_clients",
         result="scale_gen_server_clients_calls_per_s", unit="calls_per_s",
         erl=[]),
    dict(name="supervised_pool",
         result="scale_supervised_pool_calls_per_s", unit="calls_per_s",
         erl=[]),
]


def command(impl, prog, n):
    """(argv, env) running `prog` on implementation `impl` at n schedulers."""
    if impl.name == "erlang":
        # argv_prefix is [erl, -noshell, -pa, DIR]
        argv = (impl.argv_prefix + ["+S", "%d:%d" % (n, n)] + prog["erl"]
                + ["-run", "otp_bench", "main", prog["name"]])
        return argv, impl.env
    var = "OTP_BENCH_SCHEDULERS" if impl.name == "otp" else "CAF_BENCH_THREADS"
    env = dict(impl.env if impl.env is not None else os.environ)
    env[var] = str(n)
    return impl.argv_prefix + [prog["name"]], env


def run_once(impl, prog, n, timeout):
    argv, env = command(impl, prog, n)
    rc, out, err = bench.run_cmd(argv, timeout, env)
    tag = "%s/%s/%d" % (prog["name"], impl.name, n)
    if rc is None:
        bench.warn("%s: timed out after %d s" % (tag, timeout))
        return None
    if rc != 0:
        bench.warn("%s: exit status %d\n%s" % (tag, rc,
                                               (err or out).strip()[-2000:]))
        return None
    found = bench.parse_results(out)
    if prog["result"] not in found:
        bench.warn("%s: no RESULT line for %s" % (tag, prog["result"]))
        return None
    value, unit = found[prog["result"]]
    if unit != prog["unit"]:
        bench.warn("%s: %s reported in %s, expected %s"
                   % (tag, prog["result"], unit, prog["unit"]))
    return value


def speedup(v1, vn, unit):
    """How many times faster at n schedulers than at 1."""
    if v1 is None or vn is None or v1 <= 0 or vn <= 0:
        return None
    return vn / v1 if bench.HIGHER_IS_BETTER.get(unit, False) else v1 / vn


def fmt_x(x):
    return "-" if x is None else "%.2fx" % x


def table(medians, impls, counts):
    """Markdown table: one row per program and scheduler count above the
    first; the last column compares otp's speed-up with Erlang's."""
    base = counts[0]
    header = ["program"]
    for i in impls:
        header += ["%s %d" % (i, base), "%s N" % i, "%s speed-up" % i]
    header.insert(1, "N")
    if "otp" in impls and "erlang" in impls:
        header.append("otp/erlang speed-up ratio")
    rows = []
    for prog in PROGRAMS:
        for n in counts[1:]:
            row = [prog["name"] + " (" + prog["unit"] + ")", str(n)]
            ups = {}
            for i in impls:
                v1 = medians.get((prog["name"], i, base))
                vn = medians.get((prog["name"], i, n))
                ups[i] = speedup(v1, vn, prog["unit"])
                row += [bench.fmt_value(v1), bench.fmt_value(vn),
                        fmt_x(ups[i])]
            if "otp" in impls and "erlang" in impls:
                ok = ups["otp"] is not None and ups["erlang"]
                row.append("%.2f" % (ups["otp"] / ups["erlang"]) if ok
                           else "-")
            if any(c not in ("-",) for c in row[2:]):
                rows.append(row)
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def git_commit():
    try:
        return subprocess.run(["git", "-C", bench.REPO, "rev-parse", "--short",
                               "HEAD"], capture_output=True, text=True,
                              timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def main():
    ap = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--schedulers", default="",
                    help="comma-separated scheduler counts, the first is the "
                         "baseline (default: 1,<cores>)")
    ap.add_argument("--runs", type=int, default=3,
                    help="runs per (program, implementation, count); the "
                         "median is reported (default 3)")
    ap.add_argument("--only", default="",
                    help="comma-separated program names (default: all)")
    ap.add_argument("--impl", default=",".join(bench.IMPLS),
                    help="comma-separated subset of otp,erlang,caf")
    ap.add_argument("--out", default="",
                    help="JSON output (default "
                         "bench/results/scaling-<timestamp>.json)")
    ap.add_argument("--otp-bin", default="build-release/bench/otp_bench")
    ap.add_argument("--build-dir", default="build-bench")
    ap.add_argument("--timeout", type=int, default=bench.RUN_TIMEOUT_S,
                    help="timeout per run in seconds (default %d)"
                         % bench.RUN_TIMEOUT_S)
    args = ap.parse_args()

    # N: the CPUs this process may use, as the node's default counts them
    # (its affinity mask; docs/design.md, "The CPUs a node uses").
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        counts = ([int(c) for c in args.schedulers.split(",") if c.strip()]
                  if args.schedulers else sorted({1, cores}))
    except ValueError:
        ap.error("--schedulers takes comma-separated integers, got %r"
                 % args.schedulers)
    if not counts or any(c < 1 for c in counts):
        ap.error("--schedulers: counts must be >= 1")
    if len(counts) < 2:
        bench.warn("only one scheduler count (%d): no speed-up to show"
                   % counts[0])
    if args.runs < 1:
        ap.error("--runs must be >= 1")
    impl_names = [i.strip() for i in args.impl.split(",") if i.strip()]
    for i in impl_names:
        if i not in bench.IMPLS:
            ap.error("unknown implementation %r (choose from %s)"
                     % (i, ",".join(bench.IMPLS)))
    progs = PROGRAMS
    if args.only:
        wanted = {w.strip() for w in args.only.split(",") if w.strip()}
        unknown = wanted - {p["name"] for p in PROGRAMS}
        if unknown:
            ap.error("unknown program(s): %s (choose from %s)" % (
                ", ".join(sorted(unknown)),
                ",".join(p["name"] for p in PROGRAMS)))
        progs = [p for p in PROGRAMS if p["name"] in wanted]

    build_dir = bench.repo_path(args.build_dir)
    impls = []
    for name in bench.IMPLS:
        if name not in impl_names:
            continue
        if name == "otp":
            impl = bench.find_otp(bench.repo_path(args.otp_bin))
        elif name == "erlang":
            impl = bench.build_erlang(build_dir)
        else:
            impl = bench.build_caf(build_dir)
        if impl is None:
            continue
        if not any(p["name"] in impl.supported for p in progs):
            bench.warn("%s: none of the scaling programs supported, skipped"
                       % name)
            continue
        impls.append(impl)
    if not impls:
        bench.warn("no implementation available, nothing to do")
        return 1
    bench.info("implementations: %s; schedulers %s; %d run(s) each, "
               "timeout %d s" % (", ".join(i.name for i in impls),
                                 ",".join(map(str, counts)), args.runs,
                                 args.timeout))

    load_start = os.getloadavg()
    collected = {}  # (program, impl, n) -> [values]
    failures = []
    for prog in progs:
        active = [i for i in impls if prog["name"] in i.supported]
        for i in impls:
            if i not in active:
                bench.info("%-20s %-6s not supported, skipped"
                           % (prog["name"], i.name))
        for r in range(args.runs):
            for impl in active:
                for n in counts:
                    v = run_once(impl, prog, n, args.timeout)
                    if v is None:
                        failures.append("%s/%s/%d#%d"
                                        % (prog["name"], impl.name, n, r + 1))
                        continue
                    collected.setdefault((prog["name"], impl.name, n),
                                         []).append(v)
                    bench.info("%-20s %-6s %3d sched run %d/%d: %s %s" % (
                        prog["name"], impl.name, n, r + 1, args.runs,
                        bench.fmt_value(v), prog["unit"]))
    load_end = os.getloadavg()

    medians = {k: statistics.median(v) for k, v in collected.items()}
    impl_order = [i.name for i in impls]
    records = []
    for prog in progs:
        for impl in impl_order:
            for n in counts:
                runs = collected.get((prog["name"], impl, n))
                if not runs:
                    continue
                records.append(dict(
                    program=prog["name"], result=prog["result"], impl=impl,
                    schedulers=n, unit=prog["unit"], value=medians[
                        (prog["name"], impl, n)], runs=runs,
                    speedup=speedup(medians.get((prog["name"], impl,
                                                 counts[0])),
                                    medians[(prog["name"], impl, n)],
                                    prog["unit"])))
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime(
        "%Y%m%dT%H%M%SZ")
    out = bench.repo_path(args.out or os.path.join(
        "bench", "results", "scaling-%s.json" % stamp))
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    meta = dict(timestamp=stamp, host=platform.node(), cores=cores,
                commit=git_commit(), runs=args.runs, schedulers=counts,
                loadavg_start=load_start, loadavg_end=load_end)
    with open(out, "w") as f:
        json.dump(dict(meta=meta, records=records), f, indent=2)
        f.write("\n")

    print()
    print(table(medians, impl_order, counts))
    print()
    print("load average (1/5/15 min) at start %.2f %.2f %.2f, at end "
          "%.2f %.2f %.2f; %d cores" % (load_start + load_end + (cores,)))
    if failures:
        print("failed runs (skipped): " + ", ".join(failures))
    print("results written to %s" % out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
