"""Surprise's ``SVD`` and ``BaselineOnly`` as scikit-learn estimators, so that
the peers are tuned by the same ``GridSearchCV`` route as ours."""

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin
from surprise import SVD, BaselineOnly, Dataset, Reader


class SurpriseRecommender(RegressorMixin, BaseEstimator):
    """``algorithm="svd"``: Surprise's SVD (``n_factors``, ``n_epochs``,
    ``lr_all``, ``reg_all``). ``algorithm="baseline"``: BaselineOnly fitted
    by ALS (``reg_u``, ``reg_i``, ``n_epochs``). X's first two columns are
    (user, item); predictions are clipped to the rating scale, as Surprise
    does. A new user's support ratings must be in the fitted data: Surprise
    has no other way to use them."""

    def __init__(self, algorithm="svd", *, n_factors=100, n_epochs=20, lr_all=0.005, reg_all=0.02, reg_u=15,
                 reg_i=10, random_state=None):
        self.algorithm = algorithm
        self.n_factors = n_factors
        self.n_epochs = n_epochs
        self.lr_all = lr_all
        self.reg_all = reg_all
        self.reg_u = reg_u
        self.reg_i = reg_i
        self.random_state = random_state

    def fit(self, X, y):
        X, y = np.asarray(X), np.asarray(y, dtype=float)
        frame = pd.DataFrame({"user": X[:, 0], "item": X[:, 1], "rating": y})
        trainset = Dataset.load_from_df(frame, Reader(rating_scale=(y.min(), y.max()))).build_full_trainset()
        if self.algorithm == "svd":
            self.algo_ = SVD(n_factors=self.n_factors, n_epochs=self.n_epochs, lr_all=self.lr_all,
                             reg_all=self.reg_all, random_state=self.random_state)
        elif self.algorithm == "baseline":
            options = {"method": "als", "n_epochs": self.n_epochs, "reg_u": self.reg_u, "reg_i": self.reg_i}
            self.algo_ = BaselineOnly(bsl_options=options, verbose=False)
        else:
            raise ValueError(f"algorithm must be 'svd' or 'baseline'; got {self.algorithm!r}.")
        self.algo_.fit(trainset)
        return self

    def predict(self, X):
        X = np.asarray(X)
        return np.array([self.algo_.predict(u, i).est for u, i in X[:, :2].tolist()])
