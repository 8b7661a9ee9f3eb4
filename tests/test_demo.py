from sklearn_metarec.__main__ import main, run


def test_demo_runs_and_reports_each_support_size(capsys):
    results = run(n_users=200, n_items=60, shots=(5, 10))
    out = capsys.readouterr().out
    assert "| 5 |" in out and "| 10 |" in out
    for k in (5, 10):
        assert set(results[k]) == {"global mean", "FactorizationRecommender", "MAMLFactorizationRecommender"}
        assert all(0 < v < 3 for v in results[k].values())


def test_command_line(capsys):
    main(["--n-users", "120", "--n-items", "50"])
    assert "MAML vs baseline" in capsys.readouterr().out
