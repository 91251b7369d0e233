# Runs hello_tree and checks its output: the crash report, the restart, a clean stop.
import subprocess
import sys

run = subprocess.run([sys.argv[1]], capture_output=True, text=True, timeout=30)
out = run.stdout + run.stderr
print(out)
checks = [
    ("greeter said hello", "hello from the tree" in out),
    ("the crash was reported", "child_terminated" in out and "the timer went off" in out),
    ("the crasher was restarted", "start #2" in out),
    ("the program stopped cleanly", run.returncode == 0 and "exit code 0" in out),
]
failed = [name for name, ok in checks if not ok]
for name in failed:
    print("FAILED:", name)
sys.exit(1 if failed else 0)
