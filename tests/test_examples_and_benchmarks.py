"""Smoke tests of the example and benchmark scripts at tiny sizes."""

import runpy
import time
import sys
from pathlib import Path

import numpy as np
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
    monkeypatch.setattr(datasets, "make_ratings", lambda **kw: real(**{**kw, "n_users": 500, "n_items": 60,
                                                                       "mean_ratings": 12}))
    runpy.run_path(str(ROOT / "examples" / "cold_start_synthetic.py"), run_name="__main__")
    assert "new users with 5 ratings" in capsys.readouterr().out


def ml100k_like_files(folder, n_users):
    """Synthetic ratings written as GroupLens's u.data (1-based ids, a
    timestamp column); returns them as (X, y) with 0-based ids."""
    from sklearn_metarec.datasets import make_ratings

    X, y = make_ratings(n_users=n_users, n_items=50, mean_ratings=30, min_ratings=22, random_state=0)
    lines = [f"{u + 1}\t{i + 1}\t{int(r)}\t{880000000 + n}\n" for n, ((u, i), r) in enumerate(zip(X, y))]
    (folder / "u.data").write_text("".join(lines))
    return X, y


def test_movielens_example_runs_on_files_in_the_official_format(tmp_path, monkeypatch, capsys):
    from sklearn_metarec import FactorizationRecommender, MAMLFactorizationRecommender

    X, y = ml100k_like_files(tmp_path, n_users=120)
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
    # Probabilities, but for BPR's ranking scores.
    assert all(((s >= 0) & (s <= 1)).all() for name, s in scores.items() if name != "popularity" and "bpr" not in name)
    assert np.isfinite(scores["MAMLFactorizationRecommender, bpr"]).all()


def _benchmarks(monkeypatch):
    # On the path for the whole test: scale.py's worker processes import from it.
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))


def test_cold_start_benchmark_runs_on_files_in_the_official_format(tmp_path, monkeypatch, capsys):
    _benchmarks(monkeypatch)
    import cold_start

    X, y = ml100k_like_files(tmp_path, n_users=150)
    out = tmp_path / "cold_start.md"
    cold_start.main(["--data", str(tmp_path), "--shots", "5", "--seeds", "0", "--out", str(out),
                     "--methods", "Empirical-Bayes bias model", "FactorizationRecommender, tuned", *cold_start.OURS])
    text = out.read_text()
    for support in ("random", "earliest"):
        for name in ("global mean", "Empirical-Bayes bias model", "FactorizationRecommender, tuned", "MAML (ours)",
                     "Meta-SGD (ours)"):
            assert f"| {support} | 5 | {name} |" in text or f"| {support} | 5 | **{name}** |" in text
    # Package estimators are scored on the whole catalogue too; the global mean is not.
    maml_rows = [line for line in text.splitlines() if "MAML (ours)" in line]
    assert maml_rows and not any("n/a" in line for line in maml_rows)
    assert all(line.endswith("| n/a | n/a | n/a |") for line in text.splitlines() if "| global mean |" in line)
    with pytest.raises(ValueError, match="unknown methods"):
        cold_start.methods(["SVD++"])


def test_scale_benchmark(tmp_path, monkeypatch, capsys):
    _benchmarks(monkeypatch)
    import scale

    out = tmp_path / "scale.md"
    scale.main(["--sizes", "20000", "--n-epochs", "1", "--threads", "2", "--thread-size", "20000",
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
                "--repeat", "1", "--memory-steps", "--data", "none", "--no-compile", "--out", str(out)])
    # One row of throughput (its last cell the agreement), one of work per task.
    speed_row, work_row = [line for line in out.read_text().splitlines() if line.startswith("| 2 | 4 |")]
    assert float(speed_row.split("|")[-2]) < 1e-8
    flops, nbytes = (float(cell.replace(",", "")) for cell in work_row.split("|")[3:5])
    assert flops > 0 and nbytes > 0 and "%" in work_row
    # The features' section: one row per (T, order), rates and slowdowns.
    speed.main(["--features-only", "--n-users", "60", "--n-items", "20", "--steps", "1", "--out", str(out)])
    rows = [line for line in (tmp_path / "speed_features.md").read_text().splitlines() if line.startswith("| 1 |")]
    assert [row.split("|")[2].strip() for row in rows] == ["exact", "first"]
    # At this size a fit's epochs take about as long as its set-up, so the
    # figures are noise: only their form is checked.
    assert all(np.isfinite(float(row.split("|")[col].strip().rstrip("x"))) for row in rows for col in (5, 7, 9))

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


def test_taste_design_is_the_kronecker_product_of_each_rating(monkeypatch):
    _benchmarks(monkeypatch)
    import numpy as np
    from bias_peer import taste_design

    rng = np.random.default_rng(1)
    # Two one-hot attributes per user, any genres per item.
    demographics = np.hstack([np.eye(3)[rng.integers(0, 3, 6)], np.eye(2)[rng.integers(0, 2, 6)]])
    genres = (rng.random((5, 4)) < 0.4).astype(float)
    u, i = rng.integers(0, 6, 20), rng.integers(0, 5, 20)
    design = taste_design(u, i, demographics, genres).toarray()
    assert np.array_equal(design, np.array([np.kron(demographics[a], genres[b]) for a, b in zip(u, i)]))


def test_side_information_benchmark_finds_a_planted_signal(tmp_path, monkeypatch, capsys):
    # Women rate one point higher than men: the user-level prior from
    # demographics must find it; the other features carry nothing.
    _benchmarks(monkeypatch)
    import numpy as np
    import side_information

    rng = np.random.default_rng(0)
    n_users, n_items = 200, 60
    gender = rng.choice(["F", "M"], n_users)
    item_bias = rng.normal(0.0, 0.5, n_items)
    lines = []
    for user in range(n_users):
        for item in rng.choice(n_items, 30, replace=False):
            level = 3.5 if gender[user] == "F" else 2.5
            rating = int(np.clip(np.rint(level + item_bias[item] + rng.normal(0.0, 0.7)), 1, 5))
            lines.append(f"{user + 1}\t{item + 1}\t{rating}\t{880000000 + len(lines)}\n")
    (tmp_path / "u.data").write_text("".join(lines))
    occupations = ["writer", "engineer", "student"]
    (tmp_path / "u.user").write_text("".join(
        f"{u + 1}|{rng.integers(18, 70)}|{gender[u]}|{occupations[u % 3]}|0000{u % 10}\n" for u in range(n_users)))
    flags = (rng.random((n_items, 19)) < 0.2).astype(int)
    (tmp_path / "u.item").write_text("".join(
        f"{i + 1}|Film {i}|01-Jan-{1950 + i % 45}||http://x|" + "|".join(map(str, flags[i])) + "\n"
        for i in range(n_items)))
    out = tmp_path / "side.md"
    side_information.main(["--data", str(tmp_path), "--shots", "5", "--seeds", "0", "--out", str(out)])
    row = [line for line in out.read_text().splitlines() if line.startswith("| 5 |")]
    assert len(row) == 1
    cells = [c.strip() for c in row[0].split("|")[1:-1]]
    user_gain = float(cells[2].split()[0])
    explained_user = float(cells[6].split()[0])
    assert user_gain > 0.02 and explained_user > 0.1
    (tmp_path / "u.user").unlink()
    with pytest.raises(ValueError, match="no user or item features"):
        side_information.main(["--data", str(tmp_path), "--shots", "5", "--seeds", "0", "--out", str(out)])


def test_catalogue_top_n_benchmark(tmp_path, monkeypatch, capsys):
    _benchmarks(monkeypatch)
    import catalogue_top_n

    X, y = ml100k_like_files(tmp_path, n_users=150)
    out = tmp_path / "top_n.md"
    catalogue_top_n.main(["--data", str(tmp_path), "--k", "5", "--seeds", "0", "--out", str(out)])
    text = out.read_text()
    for name in catalogue_top_n.METHODS:
        assert f"| {name} | " in text
    # The popularity column counts training ratings of the listed items.
    model = catalogue_top_n.METHODS["EmpiricalBayesRecommender"](0).fit(X, y)
    row = catalogue_top_n.scores(model, X, X[:40], y[:40])
    assert 0 < row["median_popularity"] <= np.bincount(X[:, 1]).max()


def test_implicit_top_n_benchmark(tmp_path, monkeypatch, capsys):
    from sklearn_metarec import MetaSGDFactorizationRecommender
    from sklearn_metarec.datasets import make_ratings
    from sklearn_metarec.metrics import ranking_report
    from sklearn_metarec.model_selection import cold_start_split

    _benchmarks(monkeypatch)
    import implicit_top_n

    X, y = make_ratings(n_users=150, n_items=50, mean_ratings=30, min_ratings=22, random_state=0)
    # Its metric is the package's catalogue metric.
    X_fit, X_q, y_fit, y_q = cold_start_split(X, y, n_support=10, test_size=0.2, random_state=0)
    model = MetaSGDFactorizationRecommender(loss="logistic", n_factors=4, n_epochs=3, random_state=0).fit(X_fit)
    lists = model.recommend(np.unique(X_q[:, 0]), n=20)[0]
    ndcg, recall = implicit_top_n.top_n_scores(lists, X_q, y_q)
    assert ndcg == pytest.approx(ranking_report(model, X_q, y_q, k=10, mode="catalogue", metrics=["ndcg"])["ndcg"])
    assert recall == pytest.approx(
        ranking_report(model, X_q, y_q, k=20, mode="catalogue", metrics=["recall"])["recall"])
    # Popularity lists leave seen items out and are ordered by count.
    pop = implicit_top_n.Popularity().fit(X_fit)
    user = X_q[0, 0]
    row = pop.lists([user], 5)[0]
    assert not set(row) & set(X_fit[X_fit[:, 0] == user, 1])
    counts = dict(zip(pop.items_, pop.counts_))
    assert all(counts[a] >= counts[b] for a, b in zip(row[:-1], row[1:]))
    # EASE is the ridge regression of each item on the others with a zero
    # diagonal: off the diagonal, (G + λI)B = G (G = XᵀX), and seen items are
    # left out.
    ease = implicit_top_n.EASE(l2=7.0).fit(X_fit)
    G = (ease.matrix_.T @ ease.matrix_).toarray()
    stationary = (G + 7.0 * np.eye(len(G))) @ ease.B_ - G
    assert np.allclose(stationary - np.diag(np.diag(stationary)), 0.0, atol=1e-8)
    assert np.all(np.diag(ease.B_) == 0.0)
    row = ease.lists([user], 5)[0]
    assert len(set(row)) == 5 and not set(row) & set(X_fit[X_fit[:, 0] == user, 1])
    names = ["popularity", "EASE", implicit_top_n.OURS[0]]
    try:
        import implicit  # noqa: F401
        names.append("implicit ALS")
    except ImportError:  # the peer is a benchmark extra
        pass
    results = implicit_top_n.run(X, y, seeds=(0,), names=names)
    assert set(results) == set(names)
    text = implicit_top_n.table(results)
    assert f"| {implicit_top_n.OURS[0]} | " in text
    assert "(popularity)" in text or "(implicit ALS)" in text


def test_robustness_benchmark(tmp_path, monkeypatch, capsys):
    _benchmarks(monkeypatch)
    import robustness

    X, y = ml100k_like_files(tmp_path, n_users=150)
    # The long-tail variant keeps about the requested ratings per item, and
    # takes most from the popular items.
    X_tail, _ = robustness.long_tail(X, y, np.random.RandomState(0), mean_per_item=12.0)
    _, before = np.unique(X[:, 1], return_counts=True)
    items, after = np.unique(X_tail[:, 1], return_counts=True)
    assert abs(len(X_tail) / len(np.unique(X[:, 1])) - 12.0) < 2.0
    assert after.max() < 0.6 * before.max()
    out = tmp_path / "robustness.md"
    robustness.main(["--data", str(tmp_path), "--shots", "5", "--seeds", "0", "1", "--out", str(out),
                     "--variants", "ml-100k", "half stars", "30% of users"])
    text = out.read_text()
    for variant in ("ml-100k", "half stars", "30% of users"):
        assert f"| {variant} | 5 | " in text
    assert "long tail" not in text.split("\n|")[-1]
    assert text.count("(lead)") + text.count("(tie)") + text.count("(behind)") == 6


def test_threads_benchmark(monkeypatch):
    from sklearn_metarec.datasets import make_ratings

    _benchmarks(monkeypatch)
    import threads

    X, y = make_ratings(n_users=60, n_items=30, random_state=0)
    rows = threads.measure(X, y)
    text = threads.table(rows)
    assert set(rows) == {None, 1}
    assert text.count("\n") == 1 + len(rows[None])
    p50, p99 = rows[1]["predict, 1 row (ms)"]
    assert 0 < p50 <= p99


def test_serving_benchmark(tmp_path, monkeypatch, capsys):
    _benchmarks(monkeypatch)
    import serving

    serving.main(["--sizes", "20000", "--out", str(tmp_path / "serving.md")])
    text = (tmp_path / "serving.md").read_text()
    assert "| 20,000 |" in text and "fold_in, per-user views" in text and "re-sort every call" in text
    from sklearn_metarec._data import RatingLog

    assert RatingLog.MERGE_AFTER == 1 << 16  # restored after the run


def test_first_use_benchmark_reports_both_runs(monkeypatch, tmp_path, capsys):
    _benchmarks(monkeypatch)
    import first_use

    runs = iter([(40.0, "sklearn_metarec: compiling the Numba kernels for first use\n"), (4.0, "")])
    monkeypatch.setattr(first_use, "timed_demo", lambda cache: next(runs))
    monkeypatch.setattr(first_use, "Path", lambda _: tmp_path / "benchmarks" / "x.py")
    first_use.main()
    text = (tmp_path / "benchmarks" / "results" / "first_use.md").read_text()
    assert "| first, empty kernel cache | 40.0 |" in text and "| second, kernels from the cache | 4.0 |" in text
    assert "compiling the Numba kernels" in text


def test_readme_outputs_records_what_a_command_prints(monkeypatch, tmp_path):
    _benchmarks(monkeypatch)
    import readme_outputs

    readme_outputs.main(tmp_path, {"x.md": ("`cmd`", lambda: print("| K | 0.1234 |"))})
    text = (tmp_path / "x.md").read_text()
    assert text.startswith("# Output of `cmd`, ") and "| K | 0.1234 |" in text and "cores." in text


def test_item_cold_start_benchmark_scores_new_items_by_their_genres(tmp_path, monkeypatch, capsys):
    # Two genres are rated a point above the rest: only a model that reads
    # the items' genres can tell new items apart.
    _benchmarks(monkeypatch)
    import numpy as np
    import item_cold_start

    rng = np.random.default_rng(0)
    n_users, n_items = 200, 80
    genre = rng.integers(0, 19, n_items)
    lines = []
    for user in range(n_users):
        for item in rng.choice(n_items, 30, replace=False):  # the content baseline fits users with 20+
            rating = int(np.clip(np.rint(3 + (genre[item] < 2) + rng.normal(0.0, 0.5)), 1, 5))
            lines.append(f"{user + 1}\t{item + 1}\t{rating}\t{880000000 + len(lines)}\n")
    (tmp_path / "u.data").write_text("".join(lines))
    flags = np.eye(19, dtype=int)[genre]
    (tmp_path / "u.item").write_text("".join(
        f"{i + 1}|Film {i}|01-Jan-{1950 + i % 45}||http://x|" + "|".join(map(str, flags[i])) + "\n"
        for i in range(n_items)))
    out = tmp_path / "items.md"
    item_cold_start.main(["--data", str(tmp_path), "--seeds", "0", "--support", "5", "--out", str(out)])
    text = out.read_text()
    assert text.count("### ") == 4 and "recall@20" in text
    scenario = text.split("### existing users x new items")[1].split("###")[0]
    rmse = {row.split("|")[1].strip(): float(row.split("|")[2].split("±")[0]) for row in scenario.splitlines()
            if row.startswith("| ") and "±" in row.split("|")[2]}  # not LightFM's n/a, when it is installed
    assert rmse["MAML + features (ours)"] < rmse["MAML, ids only (ours)"] - 0.05, rmse


def test_context_benchmark_recovers_its_planted_context(monkeypatch):
    _benchmarks(monkeypatch)
    import context

    X, y = context.planted(n_users=150, n_items=40, n_rated=25)
    results = context.run({"planted": (X, y, [2])}, seeds=(0, 1), k=10, out=lambda line: None)
    text = context.table(results)
    assert text.count("| planted |") == len(context.VARIANTS)
    rmse = {variant: np.mean([r for r, _ in results["planted", variant]]) for variant in context.VARIANTS}
    assert rmse["context, context_reg=0.005"] < rmse["ids only"] - 0.1, rmse


def test_explain_benchmark_reports_faithfulness_speed_and_counterfactuals(tmp_path, monkeypatch):
    _benchmarks(monkeypatch)
    import explain

    ml100k_like_files(tmp_path, 120)
    out = tmp_path / "explain.md"
    explain.main(["--data", str(tmp_path), "--users", "6", "--out", str(out)])
    cells = {line.split("|")[1].strip(): float(line.split("|")[2]) for line in out.read_text().splitlines()
             if line.startswith("| ") and not line.startswith("| measure")}
    assert cells["Spearman, influence against leave-one-out, mean"] > 0.8
    assert 0 <= cells["top-1 changed, 3 random ratings out"] <= 1 and cells["influence, ms per row"] > 0
    assert 0 <= cells["top-1 changed, 3 ratings of the most similar items out"] <= 1


def test_onboarding_benchmark_scores_every_strategy(tmp_path, monkeypatch):
    _benchmarks(monkeypatch)
    import onboarding

    ml100k_like_files(tmp_path, 100)
    out = tmp_path / "onboarding.md"
    onboarding.main(["--data", str(tmp_path), "--seeds", "0", "--out", str(out)])
    rows = [line.split("|") for line in out.read_text().splitlines() if line.startswith("| ") and "strategy" not in line]
    assert sorted((r[1].strip(), int(r[2])) for r in rows) == sorted(
        (s, n) for s in onboarding.STRATEGIES for n in onboarding.NS)
    for r in rows:
        assert 0 < float(r[3]) < 3 and 0 < float(r[4]) < 3 and 0 < float(r[5]) <= 1
