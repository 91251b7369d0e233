#!/usr/bin/env python3
"""The differential test of the supervisors: random scenarios (scenario.py)
played on the real Erlang/OTP (diff_player.erl, one VM for all seeds) and on
this library (player.cpp), traces normalized and compared step by step.

A divergence fails the test unless departures.json lists it (see
docs/differential.md). Seeds: --seeds / DIFF_SEEDS (default 300), from
--first / DIFF_FIRST_SEED (default 1). DIFF_KEEP=DIR keeps the traces."""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import scenario  # noqa: E402


def parse_traces(path):
    """Returns {seed: [step, ...]}; a step is {"what", "events", "R", "T"}."""
    out, steps, cur = {}, None, None
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("scenario "):
                steps = out.setdefault(line.split(" ", 1)[1], [])
            elif line.startswith("step "):
                cur = {"what": line.split(" ", 2)[2], "events": [], "R": None, "T": None}
                steps.append(cur)
            elif line.startswith("E "):
                cur["events"].append(line[2:])
            elif line.startswith("R ") or line.startswith("T "):
                cur[line[0]] = line[2:]
            elif line.startswith("crash "):
                steps.append({"what": "player crashed", "events": [line], "R": None, "T": None})
    return out


# ------------------------------------------------------------------ trees

def parse_tree(s, i=0):
    """Parses 'name(child child ...)', 'name{...}', 'name=pid' into nested lists."""
    def item(i):
        j = i
        while j < len(s) and s[j] not in " (){}":
            j += 1
        word = s[i:j]
        if j < len(s) and s[j] in "({":
            close = ")" if s[j] == "(" else "}"
            kids, j = items(j + 1, close)
            return [word, "sup" if close == ")" else "dyn", kids], j
        return word, j

    def items(i, close):
        kids = []
        while i < len(s) and s[i] != close:
            if s[i] == " ":
                i += 1
                continue
            k, i = item(i)
            kids.append(k)
        return kids, i + 1

    t, _ = item(i)
    return t


def print_tree(t):
    if isinstance(t, str):
        return t
    name, kind, kids = t
    o, c = ("(", ")") if kind == "sup" else ("{", "}")
    return name + o + " ".join(print_tree(k) for k in kids) + c


def map_tree(t, f):
    if isinstance(t, str):
        return t
    name, kind, kids = t
    return f([name, kind, [map_tree(k, f) for k in kids]])


def reverse_regular(t):
    return map_tree(t, lambda n: [n[0], n[1], list(reversed(n[2]))] if n[1] == "sup" else n)


def is_tree(s):
    return s is not None and re.fullmatch(r"[\w=]*[({].*[)}]", s) is not None


# --------------------------------------------------------- normalization

DYN_INSTANCE = re.compile(r"^(d\d+)_\d+$")


def normalize_events(events):
    """Orders that no implementation promises are made canonical: the
    terminate of orphans (workers whose supervisor was killed: reason
    killed) is compared as a set, and a dynamic supervisor's children,
    stopped all at once, in sorted runs."""
    kept, orphans = [], []
    for e in events:
        w = e.split(" ")
        if w[0] == "terminate" and w[2] == "killed":
            orphans.append(e)
        else:
            kept.append(e)
    out, run, run_key = [], [], None

    def flush():
        out.extend(sorted(run))
        run.clear()

    for e in kept:
        w = e.split(" ")
        m = DYN_INSTANCE.match(w[1]) if w[0] == "terminate" else None
        key = m.group(1) if m else None
        if key is None or key != run_key:
            flush()
        run_key = key
        (run if key else out).append(e)
    flush()
    if orphans:
        out.append("orphans: " + ", ".join(sorted(orphans)))
    return out


def rewrite(s, d):
    """A `rewrite` departure: a line of this side that matches `line`, in a
    step whose action matches `step`, becomes `to`."""
    if not re.search(d.get("step", ""), s["what"]):
        return
    s["events"] = [re.sub(d["line"], d["to"], "E " + e)[2:] for e in s["events"]]
    for k in ("R", "T"):
        if s[k] is not None:
            s[k] = re.sub(d["line"], d["to"], f"{k} {s[k]}")[2:]


def normalize(steps, side, departures):
    active = {d["id"] for d in departures if d["kind"] == "normalize"}
    rewrites = [d for d in departures if d["kind"] == "rewrite" and d["side"] == side]
    for s in steps:
        for d in rewrites:
            rewrite(s, d)
        s["events"] = normalize_events(s["events"])
        if side == "cpp" and "which_children_order" in active:
            for k in ("R", "T"):
                if is_tree(s[k]):
                    s[k] = print_tree(reverse_regular(parse_tree(s[k])))
    return steps


# -------------------------------------------------------------- compare

def first_divergence(otp, cpp):
    """Returns None, or (step index, otp line, cpp line)."""
    for i in range(max(len(otp), len(cpp))):
        if i >= len(otp) or i >= len(cpp):
            return i, "<no step>" if i >= len(otp) else "step " + otp[i]["what"], \
                "<no step>" if i >= len(cpp) else "step " + cpp[i]["what"]
        a, b = otp[i], cpp[i]
        ea, eb = a["events"], b["events"]
        for j in range(max(len(ea), len(eb))):
            la = "E " + ea[j] if j < len(ea) else "<no more events>"
            lb = "E " + eb[j] if j < len(eb) else "<no more events>"
            if la != lb:
                return i, la, lb
        for k in ("R", "T"):
            if a[k] != b[k]:
                return i, f"{k} {a[k]}", f"{k} {b[k]}"
    return None


def classify(div, steps, departures):
    """Returns the id of the departure that explains the divergence, if any:
    its regexes match the OTP line, the C++ line and (optionally) the step."""
    i, la, lb = div
    what = steps[i]["what"] if i < len(steps) else ""
    for d in departures:
        if d["kind"] != "divergence":
            continue
        if re.search(d["otp"], la) and re.search(d["cpp"], lb) and re.search(d.get("step", ""), what):
            return d["id"]
    return None


def show(seed, otp, cpp, div):
    i, la, lb = div
    lines = [f"--- seed {seed}: first divergence at step {i}"]
    lines.append("scenario:")
    lines += ["  " + l for l in scenario.generate(int(seed)).splitlines()]
    for k in range(0, min(i + 1, len(otp))):
        lines.append(f"  step {k} {otp[k]['what']}")
    lines.append("  OTP:")
    lines += ["    " + l for l in step_lines(otp, i)]
    lines.append("  C++:")
    lines += ["    " + l for l in step_lines(cpp, i)]
    lines.append(f"  OTP has: {la}")
    lines.append(f"  C++ has: {lb}")
    return "\n".join(lines)


def step_lines(steps, i):
    if i >= len(steps):
        return ["<no step>"]
    s = steps[i]
    return [f"step {i} {s['what']}"] + ["E " + e for e in s["events"]] + [f"R {s['R']}", f"T {s['T']}"]


def self_check(departures):
    """The comparer must still see what matters after normalization: the
    stop order of a supervisor's workers, a missing report, a different
    result. Fails loudly if a normalization grew too wide."""
    def step(events, r="ok", t="dead:shutdown"):
        return [{"what": "crash w1 error", "events": list(events), "R": r, "T": t}]

    base = ["terminate w2 shutdown", "terminate w1 shutdown", "report child_terminated s0 w1 boom"]
    cases = [
        (["terminate w1 shutdown", "terminate w2 shutdown", base[2]], "the stop order of workers"),
        (base[:2], "a missing report"),
        (base + ["init w1 ok"], "an extra init"),
    ]
    for other, what in cases:
        a = normalize(step(base), "otp", departures)
        b = normalize(step(other), "cpp", departures)
        assert first_divergence(a, b), f"difftest self-check: the comparer no longer sees {what}"
    a = normalize(step(base, r="ok"), "otp", departures)
    b = normalize(step(base, r="error:not_found"), "cpp", departures)
    assert first_divergence(a, b), "difftest self-check: the comparer no longer sees a different result"


# ------------------------------------------------------------------ run

def run(cmd, what, timeout, check=True):
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        sys.exit(f"difftest: {what} did not finish within {timeout} s: {' '.join(cmd)}")
    if check and p.returncode != 0:
        sys.exit(f"difftest: {what} failed (exit {p.returncode}): {' '.join(cmd)}\n{p.stdout}{p.stderr}")
    return p


def run_cpp(player, seeds, tmp):
    """Plays the seeds on the C++ player. A seed that crashes it is recorded
    as a divergence of that seed (with the end of the player's stderr), and
    the player is started again on the seeds after it."""
    traces, left, n = {}, list(seeds), 0
    while left:
        n += 1
        scen, trace = os.path.join(tmp, f"cpp{n}.scenarios"), os.path.join(tmp, f"cpp{n}.trace")
        with open(scen, "w") as f:
            for s in left:
                f.write(scenario.generate(s))
        p = run([player, scen, trace], "the C++ player", 240, check=False)
        got = parse_traces(trace) if os.path.exists(trace) else {}
        traces.update(got)
        if p.returncode == 0:
            break
        played = [s for s in left if str(s) in got]
        if not played:
            sys.exit(f"difftest: the C++ player failed (exit {p.returncode}) before its first scenario:\n{p.stderr}")
        dead = played[-1]
        why = (p.stderr.strip().splitlines() or ["(no output)"])[-6:]
        traces[str(dead)].append({"what": "the C++ player crashed", "R": None, "T": None,
                                  "events": [f"crash exit {p.returncode}: " + " | ".join(why)]})
        left = left[left.index(dead) + 1:]
    return traces


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--player", required=True, help="the C++ player (diff_player)")
    ap.add_argument("--src", default=HERE, help="this folder (the .erl files, departures.json)")
    ap.add_argument("--seeds", type=int, default=int(os.environ.get("DIFF_SEEDS", "300")))
    ap.add_argument("--first", type=int, default=int(os.environ.get("DIFF_FIRST_SEED", "1")))
    ap.add_argument("--show", type=int, default=3, help="print at most this many unexplained divergences")
    ap.add_argument("--all", action="store_true", help="report departures too, not only failures")
    args = ap.parse_args()

    erl, erlc = shutil.which("erl"), shutil.which("erlc")
    if not erl or not erlc:
        print("difftest: erl/erlc not found: install erlang-nox (make test does); skipped")
        return 77
    with open(os.path.join(args.src, "departures.json")) as f:
        departures = json.load(f)
    self_check(departures)

    keep = os.environ.get("DIFF_KEEP")
    tmp = keep or tempfile.mkdtemp(prefix="difftest-")
    os.makedirs(tmp, exist_ok=True)
    try:
        seeds = range(args.first, args.first + args.seeds)
        scen = os.path.join(tmp, "scenarios.txt")
        with open(scen, "w") as f:
            for s in seeds:
                f.write(scenario.generate(s))
        t0 = time.monotonic()
        erls = [os.path.join(args.src, n) for n in ("diff_player.erl", "diff_worker.erl", "diff_sup.erl")]
        run([erlc, "-o", tmp] + erls, "erlc", 120)
        otp_trace = os.path.join(tmp, "otp.trace")
        run([erl, "+S", "1", "-noshell", "-pa", tmp, "-run", "diff_player", "main", scen, otp_trace], "erl", 240)
        t1 = time.monotonic()
        cpp = run_cpp(args.player, seeds, tmp)
        t2 = time.monotonic()
        otp = parse_traces(otp_trace)
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)

    same, explained, failed = 0, {}, []
    for s in seeds:
        key = str(s)
        a = normalize(otp.get(key, []), "otp", departures)
        b = normalize(cpp.get(key, []), "cpp", departures)
        div = first_divergence(a, b) if a else (0, "<no trace>", "")
        if div is None:
            same += 1
            continue
        dep = classify(div, a, departures)
        if dep:
            explained.setdefault(dep, []).append(s)
            if args.all:
                print(f"[{dep}]\n" + show(key, a, b, div) + "\n")
        else:
            failed.append(s)
            if len(failed) <= args.show:
                print(show(key, a, b, div) + "\n")

    print(f"difftest: {len(seeds)} seeds ({args.first}..{args.first + args.seeds - 1}): {same} identical, "
          f"{sum(len(v) for v in explained.values())} on the departures list, {len(failed)} unexplained "
          f"(OTP {t1 - t0:.1f} s, C++ {t2 - t1:.1f} s)")
    for d in departures:
        if d["kind"] == "rewrite":
            print(f"  {d['id']} ({d['status']}): rewritten on the {d['side']} side wherever seen")
        if d["kind"] == "divergence":
            hits = explained.get(d["id"], [])
            print(f"  {d['id']} ({d['status']}): {len(hits)} seeds" + (f", e.g. {hits[:5]}" if hits else ""))
    if failed:
        print(f"difftest: unexplained divergences in seeds {failed[:30]}{' ...' if len(failed) > 30 else ''}; "
              f"rerun one with --first N --seeds 1")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
