import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_opens_with_install_and_test_commands():
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), re.S)
    assert "python -m sklearn_metarec" in blocks[0] and "pip install" in blocks[0]
    assert "pytest" in blocks[1]


def test_readme_python_examples_run():
    first, second, third = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)[:3]
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
