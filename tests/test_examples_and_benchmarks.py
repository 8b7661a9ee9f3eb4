"""Smoke tests of the example and benchmark scripts at tiny sizes."""

import runpy
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_meta_step_benchmark(tmp_path, capsys):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import meta_step
    finally:
        sys.path.pop(0)
    out = tmp_path / "meta_step.md"
    meta_step.main(["--n-users", "80", "--n-items", "40", "--steps", "1", "--factors", "4",
                    "--repeat", "1", "--out", str(out)])
    table = out.read_text()
    assert "| 1 | 4 |" in table and "cost ratio" in table


def test_example_runs(capsys, monkeypatch):
    import sklearn_metarec.datasets as datasets

    real = datasets.make_ratings
    monkeypatch.setattr(datasets, "make_ratings", lambda **kw: real(**{**kw, "n_users": 1000, "n_items": 60,
                                                                       "mean_ratings": 12}))
    runpy.run_path(str(ROOT / "examples" / "cold_start_synthetic.py"), run_name="__main__")
    assert "new users with 5 ratings" in capsys.readouterr().out
