"""Fuzzing: generated data and parameters against every estimator, the
estimators in turn in one child process (tests/_fuzz_driver.py), so that a
crash fails the test and names the case instead of killing the run; each
estimator's test reads its own summary line and log.

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
    """One driver for all the estimators, in turn (see tests/_background.py):
    a process each would load the interpreter and the kernels five times."""
    driver = Path(__file__).with_name("_fuzz_driver.py")
    pattern = str(Path(folder) / "fuzz-{}.log")
    return {"fuzz": ([sys.executable, str(driver), ",".join(ESTIMATORS), str(N_CASES), pattern], None, 1800)}


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_no_input_or_parameter_crashes_or_half_applies(estimator, request, tmp_path):
    code, out, err, folder = _background.outcome(request, sys.modules[__name__], "fuzz", tmp_path)
    log = log_of(folder, estimator)
    text = log.read_text() if log.exists() else ""
    last = text[text.rfind("\ncase "):][:3000] or "(none)"
    done = re.search(rf"^{estimator}: (\d+) cases, (\d+) fitted, then (\d+) calls done and (\d+) refused", out,
                     re.M)
    if done is None:
        if code is None:
            pytest.fail(f"a case hung; the last one started:{last}")
        failure = out[out.find(f"{estimator} failed:"):][:4000] if f"{estimator} failed:" in out else out[-3000:]
        pytest.fail(f"exit status {code} (negative: killed by a signal, a crash); last case started:\n{last}\n"
                    f"{failure}\n{err[-3000:]}")
    cases, fitted, updated, refused = map(int, done.groups())
    print(done.group(0))
    assert cases == N_CASES
    # The generator must reach past validation often enough to test the
    # kernels and the transactions, not only the checks on input.
    assert fitted >= N_CASES // 10 and updated > 0 and refused > 0
