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
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("hypothesis")

ESTIMATORS = ["MAMLFactorizationRecommender", "MetaSGDFactorizationRecommender",
              "ReptileFactorizationRecommender", "FactorizationRecommender", "EmpiricalBayesRecommender"]
N_CASES = int(os.environ.get("SKLEARN_METAREC_FUZZ_CASES", "300"))


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_no_input_or_parameter_crashes_or_half_applies(estimator, tmp_path):
    log = tmp_path / "cases.log"
    driver = Path(__file__).with_name("_fuzz_driver.py")

    def last_case():
        text = log.read_text() if log.exists() else ""
        return text[text.rfind("\ncase "):][:3000] or "(none)"

    try:
        result = subprocess.run([sys.executable, str(driver), estimator, str(N_CASES), str(log)],
                                capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        pytest.fail(f"a case hung; the last one started:{last_case()}")
    last = last_case()
    assert result.returncode == 0, (
        f"exit status {result.returncode} (negative: killed by a signal, a crash); last case started:\n{last}\n"
        f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    done = re.search(r"(\d+) cases, (\d+) fitted, then (\d+) calls done and (\d+) refused", result.stdout)
    assert done, result.stdout[-2000:]
    cases, fitted, updated, refused = map(int, done.groups())
    print(f"{estimator}: {result.stdout.strip().splitlines()[-1]}")
    assert cases == N_CASES
    # The generator must reach past validation often enough to test the
    # kernels and the transactions, not only the checks on input.
    assert fitted >= N_CASES // 10 and updated > 0 and refused > 0
