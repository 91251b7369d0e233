#!/usr/bin/env python3
"""Each public header compiles on its own: a user may include any one first.

Compiles a file that includes only that header, for every header under
otp/, behaviours/, supervisor/ and registry/, with -fsyntax-only, a few at a
time. Skipped (exit 77) in sanitizer builds: the compiler's answer is the
same there, and the run is long.

usage: check.py SOURCE_ROOT SANITIZE COMPILER [COMPILER_ARGS...]
"""
import concurrent.futures
import glob
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "support"))
from syntax_check import syntax_check  # noqa: E402  (tests/support/syntax_check.py)

root, sanitize, compiler = sys.argv[1], sys.argv[2], sys.argv[3:]
if sanitize != "none":
    print("headers/check.py: skipped in a %s build" % sanitize)
    sys.exit(77)
headers = sorted(os.path.relpath(h, root) for d in ("otp", "otp/detail", "behaviours", "supervisor", "registry")
                 for h in glob.glob(os.path.join(root, d, "*.hpp")))


def compile_alone(header):
    r = syntax_check(compiler, root, '#include "%s"\n' % header)
    return header, r.returncode, r.stderr


failed = 0
with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
    for header, rc, err in pool.map(compile_alone, headers):
        if rc == 0:
            print("ok:   " + header)
        else:
            failed += 1
            print("FAIL: %s does not compile on its own:\n%s" % (header, err[-3000:]))
print("%d headers, %d failed" % (len(headers), failed))
sys.exit(1 if failed else 0)
