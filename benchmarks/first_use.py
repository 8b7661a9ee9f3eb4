"""First use: the demo run twice, each in a fresh process, the first with
an empty kernel cache (so it compiles every kernel it needs) and the second
loading them from that cache.

    python benchmarks/first_use.py

Writes benchmarks/results/first_use.md.
"""

import os
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path


def timed_demo(cache):
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "sklearn_metarec"], capture_output=True, text=True, check=True,
                            env={**os.environ, "NUMBA_CACHE_DIR": cache})
    return time.perf_counter() - start, result.stderr


def main():
    with tempfile.TemporaryDirectory() as cache:
        first, notice = timed_demo(cache)
        second, _ = timed_demo(cache)
    said = next((line for line in notice.splitlines() if "compiling" in line), "(no notice)")
    text = (f"# First use, {date.today()}\n\n`python -m sklearn_metarec` in a fresh process; {os.cpu_count()} "
            f"cores.\n\n| run | wall time (s) |\n|---|---|\n| first, empty kernel cache | {first:.1f} |\n"
            f"| second, kernels from the cache | {second:.1f} |\n\nThe first run said: `{said}`\n")
    print(text)
    out = Path(__file__).parent / "results" / "first_use.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)


if __name__ == "__main__":
    main()
