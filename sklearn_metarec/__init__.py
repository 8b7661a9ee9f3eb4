"""Scikit-learn-compatible meta-learning recommenders for few-shot users."""

from ._base import DivergenceError
from ._data import ContextColumnsIgnoredWarning
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
    "MAMLFactorizationRecommender",
    "MetaSGDFactorizationRecommender",
    "ReptileFactorizationRecommender",
    "load_model",
    "save_model",
]
