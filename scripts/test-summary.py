#!/usr/bin/env python3
"""Prints one closing line, 'N passed, M failed', over meson test logs.

Counts doctest test cases where a test is a doctest suite (its own summary
line), and each other meson test (compile-fail checks, samples) as one.

usage: test-summary.py BUILD_DIR...   (reads BUILD_DIR/meson-logs/testlog.json)
Exits 1 if any test failed or a log is missing.
"""
import json
import re
import sys

passed = failed = 0
missing = []
for build in sys.argv[1:]:
    try:
        with open(f"{build}/meson-logs/testlog.json") as f:
            for line in f:
                if not line.strip():
                    continue
                entry = json.loads(line)
                result = entry.get("result")
                cases = re.search(r"test cases:\s*(\d+) \|\s*(\d+) passed \|\s*(\d+) failed",
                                  entry.get("stdout") or "")
                if cases and result == "OK":
                    passed += int(cases.group(2))
                    failed += int(cases.group(3))
                elif result in ("OK", "EXPECTEDFAIL"):
                    passed += 1
                elif result != "SKIP":
                    failed += max(1, int(cases.group(3)) if cases else 1)
    except OSError:
        missing.append(build)
for build in missing:
    print(f"no test log in {build}", file=sys.stderr)
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed or missing else 0)
