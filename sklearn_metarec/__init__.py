"""Scikit-learn-compatible meta-learning recommenders for few-shot users."""

import os

# Numba's OpenMP thread pool spins while it waits for work by default; on a
# machine whose cores other processes use, that spinning made a 1.5 s fit
# take 20-80 s. Passive waiting costs nothing measurable when the cores are
# free. It must be set before the pool starts (on the first parallel call);
# a value the user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from ._base import DivergenceError
from ._data import ContextColumnsIgnoredWarning
from ._features import FeatureTable
from .baseline import EmpiricalBayesRecommender
from .factorization import FactorizationRecommender
from .maml import MAMLFactorizationRecommender
from .meta_sgd import MetaSGDFactorizationRecommender
from .persistence import load_model, save_model
from .reptile import ReptileFactorizationRecommender

__version__ = "0.1.0"

__all__ = [
    "ContextColumnsIgnoredWarning",
    "DivergenceError",
    "EmpiricalBayesRecommender",
    "FactorizationRecommender",
    "FeatureTable",
    "MAMLFactorizationRecommender",
    "MetaSGDFactorizationRecommender",
    "ReptileFactorizationRecommender",
    "load_model",
    "save_model",
]
