#!/usr/bin/env python3
"""Renders bench/results/latest.json as a markdown table.

usage: table.py [--results FILE] [--update README.md] [--chart FILE.svg]
With --update, replaces what stands between the markers
<!-- bench-table --> and <!-- /bench-table --> (the runtime against Erlang
and CAF) and <!-- redis-table --> ... <!-- /redis-table --> (the kvstore
sample against redis-server) in that file. With --chart, draws the ratios
as a bar chart (SVG).
"""
import argparse
import json
import os
import re
import statistics

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HIGHER_IS_BETTER = {"msgs_per_s", "calls_per_s", "msgs/s", "requests_per_s"}


def fmt(v):
    if v is None:
        return "–"
    if v >= 100:
        return f"{v:,.0f}"
    return f"{v:,.1f}"


def ratio(ours, theirs, unit, digits=1):
    if ours is None or theirs is None or ours <= 0 or theirs <= 0:
        return "–"
    if unit in HIGHER_IS_BETTER:
        r = ours / theirs
    else:
        r = theirs / ours
    memory = unit in ("bytes", "x the value")
    if r >= 1:
        return f"{r:.{digits}f}x {'smaller' if memory else 'faster'}"
    return f"{1 / r:.{digits}f}x {'larger' if memory else 'slower'}"


def paired_ratio(row, ours, theirs, unit):
    """ours against theirs. redis_bench.py measures the servers one after the
    other within each run, so run i of each is a pair taken under the same
    load of the host: the median of the pairs' ratios, which a slow phase of
    the host does not skew as it skews a ratio of medians. Without runs of
    the same count, the ratio of the medians."""
    a, b = row.get("runs", {}).get(ours), row.get("runs", {}).get(theirs)
    if a and b and len(a) == len(b) and all(x > 0 for x in a + b):
        return ratio(statistics.median(x / y for x, y in zip(a, b)), 1.0, unit, 2)
    return ratio(row.get(ours), row.get(theirs), unit, 2)


def rows_by_bench(results):
    by, order = {}, []
    for r in results:
        key = r["bench"]
        if key not in by:
            by[key] = {"unit": r["unit"]}
            order.append(key)
        by[key][r["impl"]] = r["value"]
        if r.get("runs"):
            by[key].setdefault("runs", {})[r["impl"]] = r["runs"]
    return by, order


def render(results):
    by, order = rows_by_bench(results)
    lines = [
        "| benchmark | unit | otp-cpp | Erlang/OTP 25 | CAF 0.17 | vs Erlang | vs CAF |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for key in order:
        row = by[key]
        if "otp" not in row or key.startswith("kvstore_"):
            continue  # not built here, or compared with redis-server below
        u = row["unit"]
        lines.append(
            f"| `{key}` | {u} | {fmt(row.get('otp'))} | {fmt(row.get('erlang'))} | {fmt(row.get('caf'))} "
            f"| {ratio(row.get('otp'), row.get('erlang'), u)} | {ratio(row.get('otp'), row.get('caf'), u)} |"
        )
    return "\n".join(lines)


def render_redis(results):
    by, order = rows_by_bench(results)
    lines = [
        "| redis-benchmark (50 clients) | unit | kvstore, 1 scheduler | kvstore, default schedulers "
        "| redis-server | kvstore (1) vs redis | default vs 1 scheduler |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for key in order:
        row = by[key]
        if not key.startswith("kvstore_") or "otp" not in row:
            continue
        u = row["unit"]
        lines.append(f"| `{key}` | {u} | {fmt(row.get('otp'))} | {fmt(row.get('otp_default'))} "
                     f"| {fmt(row.get('redis'))} | {paired_ratio(row, 'otp', 'redis', u)} "
                     f"| {paired_ratio(row, 'otp_default', 'otp', u)} |")
    return "\n".join(lines) if len(lines) > 2 else "(no kvstore results yet: run `make bench`)"


def speedup(ours, theirs, unit):
    if ours is None or theirs is None or ours <= 0 or theirs <= 0:
        return None
    return ours / theirs if unit in HIGHER_IS_BETTER else theirs / ours


def chart(results):
    """A horizontal bar per benchmark: how many times better than Erlang (or
    redis-server for the kvstore rows), on a log scale; 1x is the line."""
    import math
    by, order = rows_by_bench(results)
    bars = []
    for key in order:
        row = by[key]
        other = "redis" if key.startswith("kvstore_") else "erlang"
        v = speedup(row.get("otp"), row.get(other), row["unit"])
        if v is not None:
            bars.append((key, v, "redis-server" if other == "redis" else "Erlang/OTP 25"))
    width, left, bar_h, gap, top = 860, 300, 18, 6, 40
    height = top + len(bars) * (bar_h + gap) + 40
    lo, hi = math.log10(0.1), math.log10(1000)

    def x(v):
        return left + (math.log10(min(max(v, 0.1), 1000)) - lo) / (hi - lo) * (width - left - 20)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           '<text x="10" y="20" font-size="14" font-weight="bold">otp-cpp against Erlang/OTP 25 '
           '(kvstore rows: against redis-server); log scale, longer is better</text>']
    for tick in (0.1, 1, 10, 100, 1000):
        tx = x(tick)
        out.append(f'<line x1="{tx:.1f}" y1="{top - 6}" x2="{tx:.1f}" y2="{height - 30}" stroke="#ccc"/>')
        out.append(f'<text x="{tx:.1f}" y="{height - 14}" text-anchor="middle">{tick:g}x</text>')
    for i, (key, v, against) in enumerate(bars):
        y = top + i * (bar_h + gap)
        x0, x1 = x(1), x(v)
        colour = "#2a7" if v >= 1 else "#d54"
        out.append(f'<text x="{left - 8}" y="{y + bar_h - 5}" text-anchor="end">{key}</text>')
        out.append(f'<rect x="{min(x0, x1):.1f}" y="{y}" width="{abs(x1 - x0):.1f}" height="{bar_h}" fill="{colour}">'
                   f'<title>{key}: {v:.2f}x vs {against}</title></rect>')
        out.append(f'<text x="{max(x0, x1) + 4:.1f}" y="{y + bar_h - 5}">{v:.1f}x</text>')
    out.append(f'<line x1="{x(1):.1f}" y1="{top - 6}" x2="{x(1):.1f}" y2="{height - 30}" stroke="#333"/>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def replace_block(text, marker, body):
    block = f"<!-- {marker} -->\n{body}\n<!-- /{marker} -->"
    if f"<!-- /{marker} -->" in text:
        return re.sub(f"<!-- {marker} -->.*?<!-- /{marker} -->", lambda _: block, text, flags=re.S)
    return text.replace(f"<!-- {marker} -->", block)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", default=os.path.join(REPO, "bench/results/latest.json"))
    ap.add_argument("--update")
    ap.add_argument("--chart")
    args = ap.parse_args()
    with open(args.results) as f:
        results = json.load(f)
    table, redis_table = render(results), render_redis(results)
    if args.chart:
        with open(args.chart, "w") as f:
            f.write(chart(results))
    if not args.update:
        print(table)
        print()
        print(redis_table)
        return
    with open(args.update) as f:
        text = f.read()
    text = replace_block(text, "bench-table", table)
    text = replace_block(text, "redis-table", redis_table)
    with open(args.update, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
