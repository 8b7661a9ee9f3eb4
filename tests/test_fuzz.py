"""Fuzzing: generated data and parameters against every estimator, each
estimator's cases in a child process (tests/_fuzz_driver.py), so that a
crash fails the test and names the case instead of killing the run.

Every call must raise a ValueError or TypeError, or give finite results;
a call that raises must leave the estimator exactly as it was. The number
of cases per estimator is ``SKLEARN_METAREC_FUZZ_CASES`` (default 300;
the cases are derandomized, so a run is reproducible).
"""

import os
import re
import sys
from pathlib import Path

import pytest

from . import _background

pytest.importorskip("hypothesis")

ESTIMATORS = ["MAMLFactorizationRecommender", "MetaSGDFactorizationRecommender",
              "ReptileFactorizationRecommender", "FactorizationRecommender", "EmpiricalBayesRecommender"]
N_CASES = int(os.environ.get("SKLEARN_METAREC_FUZZ_CASES", "300"))


def log_of(folder, estimator):
    return Path(folder) / f"fuzz-{estimator}.log"


def BACKGROUND(folder):
    """One driver per estimator (see tests/_background.py)."""
    driver = Path(__file__).with_name("_fuzz_driver.py")
    return {f"fuzz-{e}": ([sys.executable, str(driver), e, str(N_CASES), str(log_of(folder, e))], None, 900)
            for e in ESTIMATORS}


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_no_input_or_parameter_crashes_or_half_applies(estimator, request, tmp_path):
    code, out, err, folder = _background.outcome(request, sys.modules[__name__], f"fuzz-{estimator}", tmp_path)
    log = log_of(folder, estimator)
    text = log.read_text() if log.exists() else ""
    last = text[text.rfind("\ncase "):][:3000] or "(none)"
    if code is None:
        pytest.fail(f"a case hung; the last one started:{last}")
    assert code == 0, (
        f"exit status {code} (negative: killed by a signal, a crash); last case started:\n{last}\n"
        f"{out[-3000:]}\n{err[-3000:]}"
    )
    done = re.search(r"(\d+) cases, (\d+) fitted, then (\d+) calls done and (\d+) refused", out)
    assert done, out[-2000:]
    cases, fitted, updated, refused = map(int, done.groups())
    print(f"{estimator}: {out.strip().splitlines()[-1]}")
    assert cases == N_CASES
    # The generator must reach past validation often enough to test the
    # kernels and the transactions, not only the checks on input.
    assert fitted >= N_CASES // 10 and updated > 0 and refused > 0
