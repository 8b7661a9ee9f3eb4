"""The Dask tests (``_distributed_cases.py``) run as a child pytest in the
background lane (see ``tests/_background.py``): their cluster's worker
processes keep the cores busy while this process would only wait, and the
other lane has the room. This test reports their outcome."""

import re
import sys
from pathlib import Path

import pytest

from . import _background

CASES = Path(__file__).with_name("_distributed_cases.py")


def BACKGROUND(folder):
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:logging", "-rs",
            "--rootdir", str(CASES.parent.parent), str(CASES)]
    return {"distributed": (argv, None, 900)}


def test_the_dask_cases_pass(request, tmp_path):
    pytest.importorskip("distributed")
    pytest.importorskip("dask.dataframe")
    code, out, err, _ = _background.outcome(request, sys.modules[__name__], "distributed", tmp_path)
    assert code == 0, (out[-6000:], err[-3000:])
    summary = out.strip().splitlines()[-1]
    # Every case ran: none skipped, none deselected.
    assert re.fullmatch(r"=* ?\d+ passed(, \d+ warnings?)? in .*", summary), summary
    assert int(re.search(r"(\d+) passed", summary).group(1)) >= 17, summary
