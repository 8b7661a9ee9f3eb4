import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_opens_with_install_and_test_commands():
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), re.S)
    assert "python -m sklearn_metarec" in blocks[0] and "pip install" in blocks[0]
    assert "pytest" in blocks[1]


def test_readme_python_example_runs():
    code = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)[0]
    namespace = {}
    exec(compile(code, str(README), "exec"), namespace)
    pred = namespace["model"].predict([[5000, 42], [6000, 42]])
    assert pred.shape == (2,) and pred[0] != pred[1]
