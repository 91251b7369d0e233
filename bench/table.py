#!/usr/bin/env python3
"""Renders bench/results/latest.json as a markdown table.

usage: table.py [--results FILE] [--update README.md]
With --update, replaces what stands between the markers
<!-- bench-table --> and <!-- /bench-table --> in that file.
"""
import argparse
import json
import os
import re

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HIGHER_IS_BETTER = {"msgs_per_s", "calls_per_s", "msgs/s"}


def fmt(v):
    if v is None:
        return "–"
    if v >= 100:
        return f"{v:,.0f}"
    return f"{v:,.1f}"


def ratio(ours, theirs, unit):
    if ours is None or theirs is None or ours <= 0 or theirs <= 0:
        return "–"
    if unit in HIGHER_IS_BETTER:
        r = ours / theirs
    else:
        r = theirs / ours
    word = "smaller" if unit == "bytes" else "faster"
    if r >= 1:
        return f"{r:.1f}x {word}"
    return f"{1 / r:.1f}x {'larger' if unit == 'bytes' else 'slower'}"


def render(results):
    by = {}
    order = []
    for r in results:
        key = r["bench"]
        if key not in by:
            by[key] = {"unit": r["unit"]}
            order.append(key)
        by[key][r["impl"]] = r["value"]
    lines = [
        "| benchmark | unit | otp-cpp | Erlang/OTP 25 | CAF 0.17 | vs Erlang | vs CAF |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for key in order:
        row = by[key]
        if "otp" not in row:
            continue  # not built yet here: nothing to compare
        u = row["unit"]
        lines.append(
            f"| `{key}` | {u} | {fmt(row.get('otp'))} | {fmt(row.get('erlang'))} | {fmt(row.get('caf'))} "
            f"| {ratio(row.get('otp'), row.get('erlang'), u)} | {ratio(row.get('otp'), row.get('caf'), u)} |"
        )
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", default=os.path.join(REPO, "bench/results/latest.json"))
    ap.add_argument("--update")
    args = ap.parse_args()
    with open(args.results) as f:
        table = render(json.load(f))
    if not args.update:
        print(table)
        return
    with open(args.update) as f:
        text = f.read()
    block = f"<!-- bench-table -->\n{table}\n<!-- /bench-table -->"
    if "<!-- /bench-table -->" in text:
        text = re.sub(r"<!-- bench-table -->.*?<!-- /bench-table -->", lambda _: block, text, flags=re.S)
    else:
        text = text.replace("<!-- bench-table -->", block)
    with open(args.update, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
