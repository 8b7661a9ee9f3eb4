"""The README's two tables that come from commands rather than benchmarks:
the demo (``python -m sklearn_metarec``) and ``examples/implicit_feedback.py``,
each run once and its output written to a results file with the date and
core count, so that every figure in the README has a file behind it.

    python benchmarks/readme_outputs.py

Writes benchmarks/results/demo.md and benchmarks/results/implicit_feedback_example.md.
"""

import contextlib
import io
import os
import sys
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def captured(fn):
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        fn()
    return buffer.getvalue()


def main(out_dir=ROOT / "benchmarks" / "results", runs=None):
    from sklearn_metarec.__main__ import main as demo

    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import implicit_feedback
    finally:
        sys.path.pop(0)
    runs = runs or {
        "demo.md": ("`python -m sklearn_metarec`", lambda: demo([])),
        "implicit_feedback_example.md": ("`python examples/implicit_feedback.py`", implicit_feedback.main),
    }
    for name, (command, fn) in runs.items():
        text = captured(fn)
        body = f"# Output of {command}, {date.today()}\n\n{os.cpu_count()} cores.\n\n```\n{text.strip()}\n```\n"
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / name).write_text(body)
        print(body)


if __name__ == "__main__":
    main()
