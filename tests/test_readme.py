import re
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def test_readme_opens_with_install_and_test_commands():
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), re.S)
    assert "python -m sklearn_metarec" in blocks[0] and "pip install" in blocks[0]
    assert "pytest" in blocks[1]


def test_readme_python_examples_run():
    first, second, fourth, fifth, third, sixth, seventh, eighth = re.findall(
        r"```python\n(.*?)```", README.read_text(), re.S)[:8]
    namespace = {}
    exec(compile(first, str(README), "exec"), namespace)
    pred = namespace["model"].predict([[5000, 42], [6000, 42]])
    assert pred.shape == (2,) and pred[0] != pred[1]
    exec(compile(second, str(README), "exec"), namespace)
    assert namespace["ids"].shape == (3, 10)
    assert set(namespace["search"].best_params_) == {"inner_lr"}
    exec(compile(third, str(README), "exec"), namespace)
    assert ((namespace["proba"] > 0) & (namespace["proba"] < 1)).all()
    assert namespace["ids"].shape == (1, 10)
    assert not {3, 17, 42} & set(namespace["ids"][0].tolist())
    exec(compile(fourth, str(README), "exec"), namespace)
    # New items ranked from their genre alone: most of each list is in the user's genre (chance: a quarter).
    ids, _ = namespace["model"].recommend(np.arange(60), n=5, items=np.arange(80, 100))
    assert np.mean(namespace["genre"][ids] == namespace["taste"][:60, None]) > 0.6
    exec(compile(fifth, str(README), "exec"), namespace)
    # Lists in context: the weekday's are the even items, the weekend's the odd ones.
    lists = namespace["lists"]
    assert np.mean(lists["weekday"] % 2 == 0) > 0.9 and np.mean(lists["weekend"] % 2 == 1) > 0.9
    exec(compile(sixth, str(README), "exec"), namespace)
    why = namespace["why"]
    assert len(why) == 3 and (np.abs(why["contribution"][:-1]) >= np.abs(why["contribution"][1:])).all()
    exec(compile(seventh, str(README), "exec"), namespace)
    reasons, lists = namespace["reasons"], namespace["lists"]
    assert len(reasons) == 60 and (np.bincount(reasons["row"]) == 2).all()
    assert (reasons["item"] == lists.ravel()[reasons["row"]]).all()
    exec(compile(eighth, str(README), "exec"), namespace)
    assert len(set(namespace["ask"].tolist())) == 5


def test_every_readme_table_names_the_file_behind_its_figures():
    # A figure in the README that no results file backs is a defect: each
    # table is preceded by <!-- figures: FILE[, FILE] --> (or "none" for a
    # table without measurements), and each of its measured numbers (three
    # or more decimals, or thousands separators) must appear in one of them.
    lines = README.read_text().splitlines()
    tables = [n for n, line in enumerate(lines) if line.startswith("|") and not lines[n - 1].startswith("|")]
    assert len(tables) >= 8
    for n in tables:
        source = re.fullmatch(r"<!-- figures: (.+) -->", lines[n - 1].strip())
        assert source, f"README line {n + 1}: a table without a <!-- figures: ... --> line above it"
        files = [] if source.group(1) == "none" else [ROOT / f.strip() for f in source.group(1).split(",")]
        backing = "".join(f.read_text() for f in files)
        end = n
        while end < len(lines) and lines[end].startswith("|"):
            end += 1
        for line in lines[n:end]:
            for figure in re.findall(r"(?<![\w.,])\d{1,3}(?:,\d{3})+(?![\d,])|(?<![\w.])\d+\.\d{3,}", line):
                assert figure in backing, f"README line {lines.index(line) + 1}: {figure} is in none of {files}"
