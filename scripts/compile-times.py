#!/usr/bin/env python3
"""Times the compilation of each source of a meson build, one at a time.

    scripts/compile-times.py BUILD [--match TEXT ...] [--runs N] [--against OTHER_BUILD]

Each file is compiled with its own command from BUILD/compile_commands.json,
without ccache and without writing into the build. With --against, the same
file of another build (another checkout, e.g. a `git worktree` of the
commit before) is timed in alternation with it, and both medians are shown
side by side: on a shared machine only alternating runs compare.
Figures are wall seconds; run it with nothing else running.
"""
import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time


def commands(build):
    """Returns {source path relative to its checkout: (directory, argv)}."""
    with open(os.path.join(build, "compile_commands.json")) as f:
        entries = json.load(f)
    out = {}
    for e in entries:
        argv = shlex.split(e["command"])
        if os.path.basename(argv[0]) == "ccache":
            argv = argv[1:]
        kept, skip = [], False
        for a in argv:
            if skip:
                skip = False
            elif a in ("-MQ", "-MF", "-o"):
                skip = True
            elif a != "-MD":
                kept.append(a)
        source = os.path.relpath(os.path.join(e["directory"], e["file"]), os.path.join(e["directory"], ".."))
        out.setdefault(source, (e["directory"], kept))
    return out


def time_one(directory, argv, obj):
    start = time.monotonic()
    r = subprocess.run(argv + ["-o", obj], cwd=directory, capture_output=True, text=True)
    took = time.monotonic() - start
    if r.returncode != 0:
        sys.exit(f"compile failed in {directory}: {' '.join(argv)}\n{r.stderr[:2000]}")
    return took


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("build")
    ap.add_argument("--match", action="append", default=[], help="only sources whose path contains this")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--against", help="another build directory, timed in alternation")
    args = ap.parse_args()

    mine = commands(args.build)
    other = commands(args.against) if args.against else {}
    sources = [s for s in mine if not args.match or any(m in s for m in args.match)]
    if not sources:
        sys.exit("no source matches")
    with tempfile.TemporaryDirectory() as tmp:
        obj = os.path.join(tmp, "out.o")
        header = f"{'this':>7}" + (f" {'other':>7} {'ratio':>6}" if args.against else "") + "  source"
        print(header)
        total_mine = total_other = 0.0
        for s in sources:
            a, b = [], []
            for _ in range(args.runs):
                a.append(time_one(*mine[s], obj))
                if s in other:
                    b.append(time_one(*other[s], obj))
            ma = statistics.median(a)
            total_mine += ma
            line = f"{ma:7.1f}"
            if args.against:
                if b:
                    mb = statistics.median(b)
                    total_other += mb
                    line += f" {mb:7.1f} {ma / mb:6.2f}"
                else:
                    line += f" {'-':>7} {'':>6}"
            print(f"{line}  {s}", flush=True)
        print(f"{total_mine:7.1f}" + (f" {total_other:7.1f}" if args.against else "") + "  total")


if __name__ == "__main__":
    main()
