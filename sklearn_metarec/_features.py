"""Side features of items or users: the table a user passes, read into a
sparse matrix with one row per raw id."""

import numbers

import numpy as np
import scipy.sparse as sp

from ._data import Vocabulary, check_id_column


class FeatureTable:
    """Side features, one row per raw id, for ``fit(..., item_features=...)``
    or ``fit(..., user_features=...)``.

    Numeric and boolean columns are used as they are (scale them to about
    [0, 1] yourself: each feature's embedding is multiplied by its value);
    a column of strings or a categorical column becomes one 0/1 feature per
    value (``"genre=Comedy"``). An id without a row has no features.

    scikit-learn's ``GridSearchCV`` and ``cross_validate`` cut every fit
    parameter with as many rows as ``X`` into the folds' rows. A table
    wrapped here is not array-like, so it reaches every fold whole; pass a
    bare DataFrame only to a plain ``fit``.

    Parameters
    ----------
    table : DataFrame, ndarray or sparse matrix of shape (n_ids, n_columns)
        A DataFrame is indexed by raw id (or holds the ids in ``ids``);
        an array or a sparse matrix needs ``ids``.
    ids : array-like of shape (n_ids,), default=None
        Raw ids of the rows, each at most once.

    Attributes
    ----------
    ids : ndarray of shape (n_ids,)
        Raw ids of the rows.
    matrix : scipy.sparse.csr_matrix of shape (n_ids, n_features)
        The features, float64.
    names : list of str
        The name of each feature.

    Examples
    --------
    >>> import pandas as pd
    >>> from sklearn_metarec import FeatureTable
    >>> table = FeatureTable(pd.DataFrame({"genre": ["Comedy", "Drama", "Comedy"], "new": [True, False, False]},
    ...                                   index=[10, 11, 12]))
    >>> table.names, table.matrix.toarray().tolist()[0]
    (['genre=Comedy', 'genre=Drama', 'new'], [1.0, 0.0, 1.0])
    """

    def __init__(self, table, ids=None):
        if hasattr(table, "columns") and hasattr(table, "dtypes"):
            self.ids = np.asarray(table.index if ids is None else ids)
            self.matrix, self.names = _from_frame(table)
        elif ids is None:
            raise TypeError("a feature table given as an array or a sparse matrix needs ids=, the raw id of each row.")
        else:
            self.ids = np.asarray(ids)
            matrix = sp.csr_matrix(table, dtype=np.float64) if sp.issparse(table) else None
            if matrix is None:
                values = np.asarray(table)
                if values.ndim != 2 or values.dtype.kind not in "biuf":
                    raise TypeError("a feature table must be a DataFrame, or a 2-D numeric array or sparse matrix "
                                    f"with ids=; got {type(table).__name__} of dtype {values.dtype}.")
                matrix = sp.csr_matrix(values.astype(np.float64))
            self.matrix = matrix
            self.names = [f"f{j}" for j in range(matrix.shape[1])]
        if self.ids.ndim != 1 or len(self.ids) != self.matrix.shape[0]:
            raise ValueError(f"the feature table has {self.matrix.shape[0]} rows but {self.ids.size} ids.")
        if len(self.ids) == 0 or self.matrix.shape[1] == 0:
            raise ValueError("the feature table is empty: it needs at least one row and one feature.")
        if not np.isfinite(self.matrix.data).all():
            raise ValueError("the feature table holds NaN or infinite values; fill or drop them first.")
        check_id_column(self.ids, "row", source="the feature table")
        self._vocab = Vocabulary("row")
        codes = self._vocab.fit(self.ids)
        if len(self._vocab) < len(self.ids):
            raise ValueError("the feature table lists the same id more than once.")
        # Rows in the vocabulary's order, so that a code is a row.
        self.ids = self._vocab.ids
        self.matrix = self.matrix[np.argsort(codes)].tocsr()
        self.matrix.sum_duplicates()
        self.matrix.eliminate_zeros()

    def rows(self, ids):
        """The rows of ``ids`` (raw ids; an id not in the table gets an
        empty row) as a CSR matrix, and a mask of the ids found."""
        index = self._vocab.lookup(np.asarray(ids))
        found = index >= 0
        take = sp.csr_matrix((np.ones(found.sum()), (np.flatnonzero(found), index[found])),
                             shape=(len(ids), len(self.ids)))
        return (take @ self.matrix).tocsr(), found

    def aligned(self, names, name="item_features"):
        """This table with the columns ``names`` (a fitted model's), so that
        a table holding only some categories (a few new ids) lines up; a
        feature absent here is 0. A feature the model does not know is an
        error."""
        if self.names == list(names):
            return self
        position = {n: j for j, n in enumerate(names)}
        unknown = [n for n in self.names if n not in position]
        if unknown:
            raise ValueError(f"{name} must have the features the model was fitted with; these are new to it: "
                             f"{unknown[:5]}.")
        columns = np.array([position[n] for n in self.names], dtype=np.int64)
        out = object.__new__(FeatureTable)
        out.ids, out._vocab, out.names = self.ids, self._vocab, list(names)
        moved = self.matrix.tocoo()
        out.matrix = sp.csr_matrix((moved.data, (moved.row, columns[moved.col])),
                                   shape=(self.matrix.shape[0], len(names)))
        return out


def _from_frame(frame):
    blocks, names = [], []
    for column in frame.columns:
        values = frame[column]
        kind = values.dtype.kind
        if kind in "biuf":
            numeric = values.to_numpy(dtype=np.float64)
            if np.isnan(numeric).any():
                raise ValueError(f"feature column {column!r} holds NaN; fill or drop it first.")
            blocks.append(sp.csr_matrix(numeric[:, None]))
            names.append(str(column))
        elif kind in "OUSm" or str(values.dtype) in ("category", "string"):
            if values.isna().any():
                raise ValueError(f"feature column {column!r} holds missing values; fill or drop them first.")
            levels, codes = np.unique(values.astype(str).to_numpy(), return_inverse=True)
            blocks.append(sp.csr_matrix((np.ones(len(codes)), (np.arange(len(codes)), codes.ravel())),
                                        shape=(len(codes), len(levels))))
            names += [f"{column}={level}" for level in levels]
        else:
            raise TypeError(f"feature column {column!r} has dtype {values.dtype}, which is neither "
                            "numeric, boolean nor categorical.")
    if not blocks:
        raise ValueError("the feature table has no columns.")
    return sp.hstack(blocks, format="csr", dtype=np.float64), names


def check_features(features, name="item_features"):
    """A ``FeatureTable`` of ``features`` (None stays None); errors name
    the parameter."""
    if features is None or isinstance(features, FeatureTable):
        return features
    if isinstance(features, (numbers.Number, str)):
        raise TypeError(f"{name} must be a DataFrame or a FeatureTable; got {features!r}.")
    try:
        return FeatureTable(features)
    except (TypeError, ValueError) as error:
        raise type(error)(f"{name}: {error}") from None
