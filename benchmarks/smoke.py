#!/usr/bin/env python3
"""Runs a benchmark program with tiny counts and checks that it exits 0 and prints at least
one line on stdout, every line a JSON object with the common fields."""
import json
import subprocess
import sys

required = ("bench", "case", "n", "p50_us", "p90_us", "p99_us", "max_us")
run = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, text=True)
sys.stdout.write(run.stdout)
if run.returncode != 0:
    sys.exit(f"{sys.argv[1]} exited with {run.returncode}")
lines = [l for l in run.stdout.splitlines() if l.strip()]
if not lines:
    sys.exit(f"{sys.argv[1]} printed nothing on stdout")
for l in lines:
    try:
        o = json.loads(l)
    except ValueError as e:
        sys.exit(f"not a JSON line ({e}): {l}")
    missing = [k for k in required if k not in o] if isinstance(o, dict) else ["(not an object)"]
    if missing:
        sys.exit(f"line lacks {missing}: {l}")
print(f"{len(lines)} valid JSON lines")
