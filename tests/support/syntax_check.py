# SPDX-License-Identifier: Apache-2.0
"""Compiles C++ source text with -fsyntax-only: the shared step of
tests/headers/check.py and tests/readme/check.py."""
import os
import subprocess
import tempfile


def syntax_check(compiler, root, source):
    """Runs `compiler` (a list) on `source` as C++20 with `root` on the include
    path; returns the subprocess.CompletedProcess (returncode, stderr)."""
    with tempfile.NamedTemporaryFile("w", suffix=".cpp", delete=False) as f:
        f.write(source)
        name = f.name
    try:
        return subprocess.run(compiler + ["-std=c++20", "-fsyntax-only", "-I", root, name],
                              capture_output=True, text=True)
    finally:
        os.unlink(name)
