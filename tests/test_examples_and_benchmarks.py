"""Smoke tests of the example and benchmark scripts at tiny sizes."""

import runpy
import time
import sys
from pathlib import Path

import pytest

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


def test_movielens_example_runs_on_files_in_the_official_format(tmp_path, monkeypatch, capsys):
    from sklearn_metarec import FactorizationRecommender, MAMLFactorizationRecommender
    from sklearn_metarec.datasets import make_ratings

    X, y = make_ratings(n_users=120, n_items=50, mean_ratings=30, min_ratings=22, random_state=0)
    lines = [f"{u + 1}\t{i + 1}\t{int(r)}\t{880000000 + n}\n" for n, ((u, i), r) in enumerate(zip(X, y))]
    (tmp_path / "u.data").write_text("".join(lines))
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import cold_start_movielens as example
    finally:
        sys.path.pop(0)
    monkeypatch.setattr(example, "GRIDS", {
        "FactorizationRecommender": (FactorizationRecommender(n_epochs=3), {"n_factors": [2, 4]}),
        "MAMLFactorizationRecommender": (MAMLFactorizationRecommender(n_factors=3, n_epochs=2),
                                         {"inner_lr": [0.05, 0.2]}),
    })
    table, plot = tmp_path / "table.md", tmp_path / "plot.png"
    example.main(["--data", str(tmp_path), "--shots", "5", "20", "--out", str(table), "--plot", str(plot)])
    text = table.read_text()
    for name in ("global mean", "FactorizationRecommender", "MAMLFactorizationRecommender"):
        assert f"| 5 | {name} |" in text and f"| 20 | {name} |" in text
    out = capsys.readouterr().out
    assert "plot saved" in out or "no plot" in out


def test_implicit_feedback_example_runs(capsys):
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import implicit_feedback as example
    finally:
        sys.path.pop(0)
    scores, _, _ = example.main(n_users=300, n_items=60)
    out = capsys.readouterr().out
    assert "| popularity |" in out and "| MAMLFactorizationRecommender |" in out
    assert all(((s >= 0) & (s <= 1)).all() for name, s in scores.items() if name != "popularity")


def _benchmarks(monkeypatch):
    # On the path for the whole test: scale.py's worker processes import from it.
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))


def test_cold_start_benchmark_runs_on_files_in_the_official_format(tmp_path, monkeypatch, capsys):
    from sklearn_metarec.datasets import make_ratings

    _benchmarks(monkeypatch)
    import cold_start

    X, y = make_ratings(n_users=150, n_items=50, mean_ratings=30, min_ratings=22, random_state=0)
    lines = [f"{u + 1}\t{i + 1}\t{int(r)}\t{880000000 + n}\n" for n, ((u, i), r) in enumerate(zip(X, y))]
    (tmp_path / "u.data").write_text("".join(lines))
    out = tmp_path / "cold_start.md"
    cold_start.main(["--data", str(tmp_path), "--shots", "5", "--seeds", "0", "--out", str(out),
                     "--methods", "FactorizationRecommender, tuned", *cold_start.OURS])
    text = out.read_text()
    for support in ("random", "earliest"):
        for name in ("global mean", "FactorizationRecommender, tuned", "MAML (ours)", "Meta-SGD (ours)"):
            assert f"| {support} | 5 | {name} |" in text or f"| {support} | 5 | **{name}** |" in text
    with pytest.raises(ValueError, match="unknown methods"):
        cold_start.methods(["SVD++"])


def test_scale_benchmark(tmp_path, monkeypatch, capsys):
    _benchmarks(monkeypatch)
    import scale

    out = tmp_path / "scale.md"
    scale.main(["--sizes", "20000", "--n-epochs", "1", "--threads", "1", "2", "--thread-size", "20000",
                "--out", str(out)])
    text = out.read_text()
    assert "| MAML fit (s) |" in text and "| 2 |" in text.split("Thread scaling")[1]
    row = [line for line in text.splitlines() if line.startswith("| 7,035 |")]
    assert len(row) == 1 and float(row[0].split("|")[6]) > 0  # peak memory was measured


@pytest.mark.parametrize("high_water_mark", [True, False])
def test_peak_memory_sees_a_freed_allocation(monkeypatch, high_water_mark):
    # 80 MB allocated, touched and freed inside the call: only a peak sees it.
    _benchmarks(monkeypatch)
    import numpy as np
    import peak_rss

    if not high_water_mark:
        def unavailable():
            raise OSError("no clear_refs")

        monkeypatch.setattr(peak_rss, "_reset_high_water_mark", unavailable)

    def allocate():
        a = np.ones(10_000_000)
        time.sleep(0.05)  # a moment for the sampling thread
        del a

    assert 70 < peak_rss.peak_memory(allocate) < 120


def test_user_offset_mse_measures_the_per_user_level_error(monkeypatch):
    _benchmarks(monkeypatch)
    import numpy as np
    from cold_start import user_offset_mse

    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(2000), rng.integers(2, 60, 2000))
    noise = rng.normal(0.0, 1.0, len(users))
    offsets = rng.normal(0.0, 0.3, 2000)
    y = np.zeros(len(users))
    # Without offsets the sampling noise of the mean residuals is taken out.
    assert abs(user_offset_mse(y + noise, y, users)) < 0.005
    with_offsets = user_offset_mse(y + noise + offsets[users], y, users)
    assert with_offsets == pytest.approx(np.average(offsets[users] ** 2), abs=0.01)
    # By hand: user 0 residuals (1, 3), user 1 residual (2).
    assert user_offset_mse([1.0, 3.0, 2.0], [0.0, 0.0, 0.0], [0, 0, 1]) == pytest.approx((2 * 4 - 2 + 4) / 3)


def test_speed_benchmark_and_its_pytorch_peer(tmp_path, monkeypatch, capsys):
    # The peer is the `benchmark` extra; without it this script cannot run at all.
    pytest.importorskip("torch", reason="the benchmark extra (PyTorch) is not installed")
    _benchmarks(monkeypatch)
    import numpy as np
    import speed
    from sklearn_metarec.datasets import make_ratings

    out = tmp_path / "speed.md"
    speed.main(["--n-users", "120", "--n-items", "40", "--steps", "2", "--factors", "4", "--torch-tasks", "8",
                "--repeat", "1", "--memory-steps", "--data", "none", "--out", str(out)])
    row = [line for line in out.read_text().splitlines() if line.startswith("| 2 | 4 |")]
    assert len(row) == 1 and float(row[0].split("|")[-2]) < 1e-8

    # The agreement check is a real check: a wrong analytic gradient is caught.
    X, y = make_ratings(n_users=60, n_items=30, random_state=1)
    problem = speed.Problem(X, y, 3, 2)
    exact = problem.ours

    def off_by_a_little(users, first_order, seed=7):
        loss, grad = exact(users, first_order, seed)
        return loss, grad * (1 + 1e-6 * np.arange(len(grad)) / len(grad))

    monkeypatch.setattr(problem, "ours", off_by_a_little)
    with pytest.raises(AssertionError, match="differs from ours"):
        speed.check_agreement(problem)
