#!/usr/bin/env python3
"""Side-by-side benchmark driver: otp (this library) vs Erlang/OTP vs CAF.

Every implementation is a program that is invoked with ONE benchmark
(invocation) name, runs a single measurement and prints one line per result:

    RESULT <bench_name> <value> <unit>

Other output lines are ignored.  The programs are

    otp     build-release/bench/otp_bench <invocation>   (--otp-bin)
    erlang  erl -noshell -pa <build>/erlang [flags] -run otp_bench main <invocation>
    caf     <build>/caf_bench <invocation>

This driver builds the Erlang modules (erlc) and the CAF binary (clang++-19,
falling back to g++), runs every selected (benchmark, implementation) pair
--runs times with a timeout, takes the median, writes a JSON file and prints a
comparison table.  An implementation whose tool/binary is missing is skipped
with a warning; a crashing or timed-out run is reported and skipped.

Which invocations an implementation supports is asked from the program itself
(`otp_bench --list`, `caf_bench --list`, `otp_bench:main(["list"])`), one
name per line; an invocation counts as supported if its name or one of its
result names is listed.

Examples (from the repository root):
    python3 bench/run.py                        # everything, 3 runs each
    python3 bench/run.py --runs 1 --impl erlang,caf
    python3 bench/run.py --only ping_pong_ns,skynet_ms --runs 5

Relative paths given to --out, --otp-bin and --build-dir are taken relative
to the repository root (the parent of this script's directory), so the
driver can be started from any working directory.
"""

import argparse
import datetime
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH_DIR = os.path.join(REPO, "bench")

IMPLS = ("otp", "erlang", "caf")
RUN_TIMEOUT_S = 120

# Direction of a unit: True = higher is better.
HIGHER_IS_BETTER = {
    "ns": False,
    "us": False,
    "ms": False,
    "bytes": False,
    "msgs_per_s": True,
    "calls_per_s": True,
}

# The benchmark table.  Each entry is one invocation of the programs:
#   name     -- the invocation name passed to the programs
#   results  -- (result name, unit) pairs the invocation prints; a third
#               element "optional" marks a result only some implementations
#               print (no warning when it is missing)
#   erl      -- extra flags for `erl` (scheduler count etc.)
# Default scheduler flags mean: one scheduler per core (Erlang's default,
# CAF is configured the same way inside caf_bench).
BENCHES = [
    dict(name="spawn_idle",
         results=[("spawn_idle_ns", "ns"), ("idle_process_bytes", "bytes")],
         erl=[]),
    dict(name="spawn_exit_ns", results=[("spawn_exit_ns", "ns")], erl=[]),
    dict(name="ping_pong_ns", results=[("ping_pong_ns", "ns")],
         erl=["+S", "1:1"]),
    # Erlang binds the two processes to different schedulers for
    # ping_pong_cross_ns and additionally reports the default-placement
    # figure (ping_pong_cross_default_ns); see otp_bench.erl.
    dict(name="ping_pong_cross_ns",
         results=[("ping_pong_cross_ns", "ns"),
                  ("ping_pong_cross_default_ns", "ns", "optional")],
         erl=["+S", "2:2"]),
    dict(name="ring_hop_ns", results=[("ring_hop_ns", "ns")], erl=[]),
    dict(name="fan_in_msgs_per_s",
         results=[("fan_in_msgs_per_s", "msgs_per_s")], erl=[]),
    # Up to ~1.1M processes are alive at once: raise the process limit.
    dict(name="skynet_ms", results=[("skynet_ms", "ms")],
         erl=["+P", "2097152"]),
    dict(name="gen_server_call_ns", results=[("gen_server_call_ns", "ns")],
         erl=[]),
    dict(name="gen_server_call_2clients_per_s",
         results=[("gen_server_call_2clients_per_s", "calls_per_s")], erl=[]),
    dict(name="gen_server_call_100clients_per_s",
         results=[("gen_server_call_100clients_per_s", "calls_per_s")],
         erl=[]),
    dict(name="gen_server_cast_ns", results=[("gen_server_cast_ns", "ns")],
         erl=[]),
    dict(name="registry_lookup_ns", results=[("registry_lookup_ns", "ns")],
         erl=[]),
    dict(name="registry_register_unregister_ns",
         results=[("registry_register_unregister_ns", "ns")], erl=[]),
    dict(name="sup_restart_us", results=[("sup_restart_us", "us")], erl=[]),
    dict(name="sup_restart_after_100k_us",
         results=[("sup_restart_after_100k_us", "us")], erl=[]),
    dict(name="sup_rest_for_one_100_us",
         results=[("sup_rest_for_one_100_us", "us")], erl=[]),
    # Erlang's timer:sleep takes whole milliseconds: its figure is ~1 ms a
    # sleep whatever the queue; ours sleeps 1 ns. The row shows that neither
    # grows with a million queued messages, not a speed ratio.
    dict(name="sleep_queued_ns", results=[("sleep_queued_ns", "ns")],
         erl=["+S", "1:1"]),
]


def warn(msg):
    print("WARNING: " + msg, file=sys.stderr, flush=True)


def info(msg):
    print(msg, flush=True)


def repo_path(p):
    return p if os.path.isabs(p) else os.path.join(REPO, p)


def run_cmd(cmd, timeout, env=None):
    """Run cmd in its own process group.  Returns (rc, stdout, stderr);
    rc is None on timeout (the whole process group is killed)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True,
                            start_new_session=True, env=env)
    try:
        out, err = proc.communicate(timeout=timeout)
        return proc.returncode, out, err
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = proc.communicate()
        return None, out, err


# ---------------------------------------------------------------------------
# Building / locating the implementations
# ---------------------------------------------------------------------------

class Impl:
    """One implementation: how to invoke it and what it supports."""

    def __init__(self, name, argv_prefix, per_bench_flags=None, list_argv=None,
                 env=None):
        self.name = name
        self.env = env  # environment for the runs (None: inherit)
        self.argv_prefix = argv_prefix
        self.per_bench_flags = per_bench_flags  # fn(bench) -> [flags]
        self.list_argv = list_argv
        self.supported = set()

    def command(self, bench):
        if self.name == "erlang":
            return (self.argv_prefix + self.per_bench_flags(bench)
                    + ["-run", "otp_bench", "main", bench["name"]])
        return self.argv_prefix + [bench["name"]]

    def query_supported(self):
        rc, out, err = run_cmd(self.list_argv, 60, self.env)
        if rc != 0:
            warn("%s: %s failed (rc=%s): %s" % (self.name, " ".join(self.list_argv),
                                                rc, err.strip()[-500:]))
            return False
        self.supported = {line.strip() for line in out.splitlines()
                          if line.strip() and not line.startswith("#")}
        return True

    def supports(self, bench):
        names = {bench["name"]} | {r[0] for r in bench["results"]}
        return bool(names & self.supported)


def build_erlang(build_dir):
    erlc = shutil.which("erlc")
    erl = shutil.which("erl")
    out = os.path.join(build_dir, "erlang")
    src_dir = os.path.join(BENCH_DIR, "erlang")
    sources = sorted(os.path.join(src_dir, f) for f in os.listdir(src_dir)
                     if f.endswith(".erl"))
    beams = [os.path.join(out, os.path.basename(f)[:-4] + ".beam") for f in sources]
    if not erl:
        warn("erlang: erl not found, skipping Erlang")
        return None
    if erlc:
        os.makedirs(out, exist_ok=True)
        rc, _, err = run_cmd([erlc, "-o", out] + sources, 300)
        if rc != 0:
            warn("erlang: erlc failed, skipping Erlang:\n" + err)
            return None
    elif not all(os.path.exists(b) for b in beams):
        # A machine with a runtime but no compiler (scripts/device-pack.sh
        # brings the modules compiled).
        warn("erlang: erlc not found and no compiled modules in %s, skipping Erlang" % out)
        return None
    # Keep crash dumps of a VM that dies during boot out of the cwd.
    env = dict(os.environ, ERL_CRASH_DUMP=os.path.join(out, "erl_crash.dump"))
    impl = Impl("erlang", [erl, "-noshell", "-pa", out],
                per_bench_flags=lambda b: list(b["erl"]),
                list_argv=[erl, "-noshell", "-pa", out,
                           "-run", "otp_bench", "main", "list"],
                env=env)
    return impl if impl.query_supported() else None


def find_cxx():
    for cxx in ("clang++-19", "g++", "c++"):
        path = shutil.which(cxx)
        if path:
            return path
    return None


def caf_available():
    return any(os.path.exists(os.path.join(d, "caf", "all.hpp"))
               for d in ("/usr/include", "/usr/local/include"))


def build_caf(build_dir):
    src = os.path.join(BENCH_DIR, "caf", "caf_bench.cpp")
    binary = os.path.join(build_dir, "caf_bench")
    cxx = find_cxx()
    if cxx is None:
        warn("caf: no C++ compiler (clang++-19/g++) found, skipping CAF")
        return None
    if not caf_available():
        warn("caf: CAF headers (caf/all.hpp) not found, skipping CAF")
        return None
    os.makedirs(build_dir, exist_ok=True)
    if (not os.path.exists(binary)
            or os.path.getmtime(binary) < os.path.getmtime(src)):
        cmd = [cxx, "-std=c++17", "-O2", "-DNDEBUG", src,
               "-lcaf_core", "-lpthread", "-o", binary]
        info("building CAF benchmark: " + " ".join(cmd))
        rc, _, err = run_cmd(cmd, 600)
        if rc != 0:
            warn("caf: build failed, skipping CAF:\n" + err[-3000:])
            return None
    impl = Impl("caf", [binary], list_argv=[binary, "--list"])
    return impl if impl.query_supported() else None


def find_otp(otp_bin):
    if not (os.path.isfile(otp_bin) and os.access(otp_bin, os.X_OK)):
        warn("otp: %s not found (build the release first), skipping otp"
             % otp_bin)
        return None
    impl = Impl("otp", [otp_bin], list_argv=[otp_bin, "--list"])
    return impl if impl.query_supported() else None


# ---------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------

def parse_results(stdout):
    """RESULT lines -> {name: (value, unit)}."""
    found = {}
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0] == "RESULT":
            try:
                found[parts[1]] = (float(parts[2]), parts[3])
            except ValueError:
                pass
    return found


def run_once(impl, bench, timeout):
    """Run one invocation.  Returns {result name: value} or None."""
    cmd = impl.command(bench)
    rc, out, err = run_cmd(cmd, timeout, impl.env)
    tag = "%s/%s" % (bench["name"], impl.name)
    if rc is None:
        warn("%s: timed out after %d s" % (tag, timeout))
        return None
    if rc != 0:
        warn("%s: exit status %d\n%s" % (tag, rc, (err or out).strip()[-2000:]))
        return None
    found = parse_results(out)
    values = {}
    for rname, unit, *flags in bench["results"]:
        if rname not in found:
            if "optional" not in flags:
                warn("%s: no RESULT line for %s" % (tag, rname))
            continue
        value, got_unit = found[rname]
        if got_unit != unit:
            warn("%s: %s reported in %s, expected %s" % (tag, rname, got_unit,
                                                         unit))
        values[rname] = value
    return values or None


def fmt_value(v):
    if v is None:
        return "-"
    if abs(v) >= 100:
        return "{:,.0f}".format(v)
    if abs(v) >= 10:
        return "{:.1f}".format(v)
    return "{:.2f}".format(v)


def fmt_ratio(otp, other, unit):
    """How otp compares to `other`, e.g. '2.3x faster'."""
    if otp is None or other is None or otp <= 0 or other <= 0:
        return "-"
    higher = HIGHER_IS_BETTER.get(unit, False)
    ratio = (otp / other) if higher else (other / otp)
    good, bad = ("smaller", "larger") if unit == "bytes" else ("faster",
                                                              "slower")
    if ratio >= 1:
        return "%.1fx %s" % (ratio, good)
    return "%.1fx %s" % (1 / ratio, bad)


def print_table(records, order):
    by_key = {(r["bench"], r["impl"]): r for r in records}
    header = ["bench", "unit", "otp", "erlang", "caf", "otp vs erlang",
              "otp vs caf"]
    rows = []
    for rname, unit in order:
        vals = {i: (by_key[(rname, i)]["value"] if (rname, i) in by_key
                    else None) for i in IMPLS}
        if all(v is None for v in vals.values()):
            continue
        rows.append([rname, unit] + [fmt_value(vals[i]) for i in IMPLS]
                    + [fmt_ratio(vals["otp"], vals["erlang"], unit),
                       fmt_ratio(vals["otp"], vals["caf"], unit)])
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = " | ".join(h.ljust(w) for h, w in zip(header, widths))
    print()
    print(line)
    print("-+-".join("-" * w for w in widths))
    for row in rows:
        print(" | ".join(
            (c.ljust(w) if k < 2 else c.rjust(w))
            for k, (c, w) in enumerate(zip(row, widths))))
    print()


def main():
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3,
                    help="runs per (benchmark, implementation); the median "
                         "is reported (default 3)")
    ap.add_argument("--only", default="",
                    help="comma-separated invocation or result names "
                         "(default: all)")
    ap.add_argument("--impl", default=",".join(IMPLS),
                    help="comma-separated subset of otp,erlang,caf")
    ap.add_argument("--out", default="bench/results/latest.json",
                    help="JSON output (a timestamped copy is written next "
                         "to it)")
    ap.add_argument("--otp-bin", default="build-release/bench/otp_bench")
    ap.add_argument("--build-dir", default="build-bench")
    ap.add_argument("--timeout", type=int, default=RUN_TIMEOUT_S,
                    help="timeout per run in seconds (default %d)"
                         % RUN_TIMEOUT_S)
    ap.add_argument("--list", action="store_true",
                    help="list the benchmark table and exit")
    args = ap.parse_args()

    if args.list:
        for b in BENCHES:
            results = ", ".join("%s [%s]" % (r[0], r[1])
                                for r in b["results"])
            print("%-34s -> %s   erl flags: %s" % (
                b["name"], results, " ".join(b["erl"]) or "(default)"))
        return 0

    impl_names = [i.strip() for i in args.impl.split(",") if i.strip()]
    for i in impl_names:
        if i not in IMPLS:
            ap.error("unknown implementation %r (choose from %s)"
                     % (i, ",".join(IMPLS)))
    if args.runs < 1:
        ap.error("--runs must be >= 1")

    benches = BENCHES
    if args.only:
        wanted = {w.strip() for w in args.only.split(",") if w.strip()}
        known = set()
        for b in BENCHES:
            known |= {b["name"]} | {r[0] for r in b["results"]}
        unknown = wanted - known
        if unknown:
            ap.error("unknown benchmark(s): %s" % ", ".join(sorted(unknown)))
        benches = [b for b in BENCHES
                   if ({b["name"]} | {r[0] for r in b["results"]}) & wanted]

    build_dir = repo_path(args.build_dir)
    impls = []
    for name in IMPLS:  # fixed order: otp, erlang, caf
        if name not in impl_names:
            continue
        if name == "otp":
            impl = find_otp(repo_path(args.otp_bin))
        elif name == "erlang":
            impl = build_erlang(build_dir)
        else:
            impl = build_caf(build_dir)
        if impl is not None:
            impls.append(impl)
    if not impls:
        warn("no implementation available, nothing to do")
        return 1
    info("implementations: " + ", ".join(i.name for i in impls)
         + "; %d run(s) each, timeout %d s" % (args.runs, args.timeout))

    # {(result name, impl): [values]}
    collected = {}
    failures = []
    for bench in benches:
        active = [i for i in impls if i.supports(bench)]
        for i in impls:
            if i not in active:
                info("%-34s %-6s not supported, skipped" % (bench["name"],
                                                            i.name))
        # Runs are interleaved between implementations so that slow drifts
        # of the machine affect all of them alike.
        for run in range(args.runs):
            for impl in active:
                values = run_once(impl, bench, args.timeout)
                if values is None:
                    failures.append((bench["name"], impl.name, run + 1))
                    continue
                for rname, v in values.items():
                    collected.setdefault((rname, impl.name), []).append(v)
                info("%-34s %-6s run %d/%d: %s" % (
                    bench["name"], impl.name, run + 1, args.runs,
                    ", ".join("%s=%s" % (k, fmt_value(v))
                              for k, v in values.items())))

    records = []
    order = [(r[0], r[1]) for b in benches for r in b["results"]]
    for rname, unit in order:
        for impl in IMPLS:
            runs = collected.get((rname, impl))
            if runs:
                records.append(dict(bench=rname, impl=impl,
                                    value=statistics.median(runs), unit=unit,
                                    runs=runs))

    out = repo_path(args.out)
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    text = json.dumps(records, indent=2) + "\n"
    with open(out, "w") as f:
        f.write(text)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime(
        "%Y%m%dT%H%M%SZ")
    copy = os.path.join(os.path.dirname(out), stamp + ".json")
    with open(copy, "w") as f:
        f.write(text)

    print_table(records, order)
    if failures:
        print("failed runs (skipped): " + ", ".join(
            "%s/%s#%d" % f for f in failures))
    print("results written to %s and %s" % (out, copy))
    return 0


if __name__ == "__main__":
    sys.exit(main())
