"""Saving fitted estimators in a format that is safe to load.

``pickle`` and ``joblib`` run code from the file while loading it, so a
model file from an untrusted source can take over the process. The format
here is a NumPy ``.npz`` archive read with ``allow_pickle=False``: numeric
and string arrays, and one JSON manifest that names the estimator class
(one of the package's), its parameters and how its state is laid out.
Nothing in the file is ever executed or unpickled, and a loaded model is
checked (shapes, vocabulary sizes, finite parameters, codes in range)
before it is returned.
"""

import json
import zipfile

import numpy as np
import scipy.sparse as sp

from ._data import RatingLog, Vocabulary
from ._features import FeatureTable
from .baseline import EmpiricalBayesRecommender
from .factorization import FactorizationRecommender
from .maml import MAMLFactorizationRecommender
from .meta_sgd import MetaSGDFactorizationRecommender
from .reptile import ReptileFactorizationRecommender

FORMAT = "sklearn-metarec"
VERSION = 1
_CLASSES = {cls.__name__: cls for cls in (
    EmpiricalBayesRecommender, FactorizationRecommender, MAMLFactorizationRecommender,
    MetaSGDFactorizationRecommender, ReptileFactorizationRecommender)}


class _Encoder:
    """Turns an estimator's attributes into JSON plus named arrays."""

    def __init__(self):
        self.arrays = {}

    def array(self, a):
        key = f"a{len(self.arrays)}"
        self.arrays[key] = np.ascontiguousarray(a)
        return key

    def __call__(self, v, where):
        if v is None or isinstance(v, (bool, int, str)):
            return {"t": "py", "v": v}
        if isinstance(v, float):
            return {"t": "py", "v": v}
        if isinstance(v, np.generic) and v.dtype.kind in "biuf":
            return {"t": "np", "dtype": v.dtype.str, "v": v.item()}
        if isinstance(v, (tuple, list)):
            return {"t": type(v).__name__, "v": [self(x, where) for x in v]}
        if isinstance(v, dict) and all(isinstance(k, str) for k in v):
            return {"t": "dict", "v": {k: self(x, where) for k, x in v.items()}}
        if isinstance(v, np.ndarray):
            if v.dtype.kind in "biufU":
                return {"t": "array", "key": self.array(v)}
            if v.dtype.kind == "O":
                if all(isinstance(x, str) for x in v.ravel()):
                    return {"t": "str_array", "key": self.array(v.astype(str))}
                # Ids of mixed kinds, or Python ints beyond int64: element by element.
                return {"t": "object_array", "v": [self(x, where) for x in v.tolist()]}
        if isinstance(v, Vocabulary):
            return {"t": "vocabulary", "name": v.name, "mixed": bool(getattr(v, "mixed", False)),
                    "ids": self(v.ids, where)}
        if isinstance(v, RatingLog):
            return {"t": "log", "coo": self(tuple(v.coo()) if len(v) else None, where)}
        if isinstance(v, np.random.RandomState):
            return {"t": "rng", "state": self(v.get_state(), where)}
        if sp.issparse(v):
            v = v.tocsr()
            return {"t": "csr", "shape": list(v.shape), "parts": self((v.data, v.indices, v.indptr), where)}
        if isinstance(v, FeatureTable):
            return {"t": "features", "ids": self(v.ids, where), "matrix": self(v.matrix, where),
                    "names": self(list(v.names), where)}
        raise TypeError(
            f"{where} holds a {type(v).__name__}, which the safe format cannot store; "
            "use pickle or joblib for this estimator (and load such files only from trusted sources)."
        )


def save_model(estimator, file):
    """Save a fitted estimator to ``file`` in the package's safe format.

    The file is a NumPy ``.npz`` archive: arrays and a JSON manifest, no
    pickled objects. :func:`load_model` reads it back into an estimator that
    predicts, recommends, folds in and trains on exactly as this one would.

    Parameters
    ----------
    estimator : estimator
        A fitted estimator of this package.
    file : str, path-like or file-like object
        Where to write; ``.npz`` is appended to a name without it, as
        :func:`numpy.savez` does.

    Raises
    ------
    TypeError
        If the estimator is not one of the package's, or a parameter holds
        a value the format cannot store (a ``random_state`` given as a
        ``RandomState`` is stored; other objects are not).

    Examples
    --------
    >>> import io
    >>> from sklearn_metarec import FactorizationRecommender, load_model, save_model
    >>> from sklearn_metarec.datasets import make_ratings
    >>> X, y = make_ratings(n_users=30, n_items=20, random_state=0)
    >>> model = FactorizationRecommender(n_factors=4, random_state=0).fit(X, y)
    >>> buffer = io.BytesIO()
    >>> save_model(model, buffer)
    >>> _ = buffer.seek(0)
    >>> bool((load_model(buffer).predict(X) == model.predict(X)).all())
    True
    """
    name = type(estimator).__name__
    if _CLASSES.get(name) is not type(estimator):
        raise TypeError(f"save_model saves the estimators of sklearn_metarec; got a {name}.")
    if not hasattr(estimator, "_theta"):
        raise ValueError(f"This {name} instance is not fitted yet; fit it before saving it.")
    encode = _Encoder()
    with estimator._reader_lock():  # a consistent snapshot: writers wait
        state = {}
        for key, value in vars(estimator).items():
            if key == "_lock" or key in estimator.get_params(deep=False):
                continue
            if key == "_user_buf":  # no spare capacity on disk
                value = estimator._users
            state[key] = encode(value, f"Attribute {key!r}")
        params = {k: encode(v, f"Parameter {k!r}") for k, v in estimator.get_params(deep=False).items()}
    manifest = {"format": FORMAT, "version": VERSION, "class": name, "params": params, "state": state}
    np.savez_compressed(file, manifest=np.array(json.dumps(manifest)), **encode.arrays)


class _Decoder:
    def __init__(self, archive):
        self.archive = archive

    def __call__(self, node):
        if not isinstance(node, dict) or "t" not in node:
            raise ValueError(f"unexpected entry {str(node)[:80]!r}")
        t = node["t"]
        if t == "py":
            if not (node["v"] is None or isinstance(node["v"], (bool, int, float, str))):
                raise ValueError(f"unexpected value {str(node['v'])[:80]!r}")
            return node["v"]
        if t == "np":
            dtype = np.dtype(node["dtype"])
            if dtype.kind not in "biuf":
                raise ValueError(f"unexpected scalar type {node['dtype']!r}")
            return dtype.type(node["v"])
        if t in ("tuple", "list"):
            return (tuple if t == "tuple" else list)(self(x) for x in node["v"])
        if t == "dict":
            return {str(k): self(x) for k, x in node["v"].items()}
        if t in ("array", "str_array"):
            key = node["key"]
            if key == "manifest" or key not in self.archive.files:
                raise ValueError(f"array {key!r} is missing")
            a = self.archive[key]
            if a.dtype.kind not in "biufU":
                raise ValueError(f"array {key!r} has dtype {a.dtype}")
            return a.astype(object) if t == "str_array" else a
        if t == "object_array":
            values = [self(x) for x in node["v"]]
            out = np.empty(len(values), dtype=object)
            out[:] = values
            return out
        if t == "vocabulary":
            vocab = Vocabulary(str(node["name"]))
            ids = self(node["ids"])
            if ids is not None:
                if not isinstance(ids, np.ndarray) or ids.ndim != 1:
                    raise ValueError("a vocabulary's ids are not a 1-D array")
                vocab._set(ids, bool(node["mixed"]))
                if len(np.unique(vocab._sorted)) != len(ids):
                    raise ValueError(f"the {vocab.name} vocabulary holds an id twice")
            return vocab
        if t == "log":
            log = RatingLog()
            coo = self(node["coo"])
            if coo is not None:
                if len(coo) not in (4, 5) or len({len(np.atleast_1d(c)) for c in coo}) != 1:
                    raise ValueError("the rating log's columns differ in length")
                log.append(*coo)
            return log
        if t == "rng":
            rng = np.random.RandomState()
            rng.set_state(self(node["state"]))
            return rng
        if t == "csr":
            data, indices, indptr = self(node["parts"])
            # The constructor checks that the indices and pointers are in range.
            return sp.csr_matrix((data, indices, indptr), shape=tuple(int(n) for n in node["shape"]))
        if t == "features":
            table = FeatureTable(self(node["matrix"]), ids=self(node["ids"]))
            names = self(node["names"])
            if not isinstance(names, list) or len(names) != table.matrix.shape[1]:
                raise ValueError("the feature table's names do not match its columns")
            table.names = [str(name) for name in names]
            return table
        raise ValueError(f"unknown entry type {t!r}")


def load_model(file):
    """Load an estimator saved by :func:`save_model`.

    Safe for files from untrusted sources: the archive is read with
    ``allow_pickle=False``, only the package's estimator classes can be
    named, parameters go through the estimator's validation, and the state
    is checked before the model is returned.

    Parameters
    ----------
    file : str, path-like or file-like object
        A file written by :func:`save_model`.

    Returns
    -------
    estimator : estimator
        The fitted estimator.

    Raises
    ------
    ValueError
        If the file is not a model saved by :func:`save_model`, or its
        content is inconsistent (the message names what).
    """
    try:
        with np.load(file, allow_pickle=False) as archive:
            if not isinstance(archive, np.lib.npyio.NpzFile) or "manifest" not in archive.files:
                raise ValueError("no manifest")
            manifest = json.loads(str(archive["manifest"]))
            if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
                raise ValueError(f"format {manifest.get('format')!r} version {manifest.get('version')!r}")
            cls = _CLASSES.get(manifest.get("class"))
            if cls is None:
                raise ValueError(f"unknown estimator class {str(manifest.get('class'))[:80]!r}")
            decode = _Decoder(archive)
            params = {k: decode(v) for k, v in manifest["params"].items()}
            state = {k: decode(v) for k, v in manifest["state"].items()}
    except (OSError, EOFError, KeyError, TypeError, AttributeError, zipfile.BadZipFile,
            json.JSONDecodeError, ValueError, RecursionError) as exc:
        raise ValueError(f"Not a model file written by save_model, or a damaged one: {exc}") from None
    try:
        estimator = cls(**params)
    except TypeError as exc:
        raise ValueError(f"The model file's parameters do not fit {cls.__name__}: {exc}") from None
    estimator._validate_params()
    vars(estimator).update(state)
    _check_loaded(estimator)
    return estimator


def _check_loaded(est):
    """Refuse a model whose arrays would make a kernel read out of range,
    or whose parameters are not finite."""

    def fail(what):
        raise ValueError(f"The model file is inconsistent: {what}.")

    for key in ("_theta", "_user_buf", "_user_vocab", "_item_vocab", "_log", "_structure", "_rng"):
        if key not in vars(est):
            fail(f"{key} is missing")
    if not isinstance(est._structure, dict) or not isinstance(est._user_vocab, Vocabulary) or not isinstance(est._item_vocab, Vocabulary) \
            or not isinstance(est._log, RatingLog) or not isinstance(est._rng, np.random.RandomState):
        fail("the vocabularies, rating log or random state have the wrong type")
    if est._structure != est._structural_params():
        fail(f"the model was built for {est._structure}, its parameters say {est._structural_params()}")
    d = int(est.n_factors) + 1
    n_users, n_items = len(est._user_vocab), len(est._item_vocab)
    theta = est._theta
    if not (isinstance(theta, np.ndarray) and theta.dtype == np.float64 and theta.shape == (1 + d + n_items * d,)):
        fail(f"the parameter vector should have {1 + d + n_items * d} float64 entries for {n_items} items "
             f"and {d - 1} factors")
    if not (isinstance(est._user_buf, np.ndarray) and est._user_buf.dtype == np.float64
            and est._user_buf.shape == (n_users, d)):
        fail(f"the user table should have shape ({n_users}, {d})")
    for key, value in vars(est).items():
        if isinstance(value, np.ndarray) and value.dtype.kind == "f" and not np.isfinite(value).all():
            fail(f"{key} holds NaN or infinite values")
    expected = {"_adam_m": theta.shape, "_adam_v": (1 + d,), "_adam_v_items": (2,), "_adam_row_steps": (n_items,)}
    for key, shape in expected.items():
        value = vars(est).get(key)
        if value is not None and (not isinstance(value, np.ndarray) or value.shape != shape):
            fail(f"{key} should have shape {shape}")
    if "_hyper" in vars(est) and np.shape(est._hyper) != (d + 1,):
        fail(f"_hyper should have shape ({d + 1},)")
    for side, n, rows, params in (("item", n_items, "_item_F", "_feat"), ("user", n_users, "_user_G", "_ufeat")):
        if vars(est).get(rows) is None:
            continue
        feat, F, table = vars(est).get(params), vars(est)[rows], vars(est).get(f"_{side}_table")
        if not (isinstance(feat, np.ndarray) and feat.ndim == 2 and feat.shape[1] == d and sp.issparse(F)
                and F.shape == (n, len(feat)) and isinstance(table, FeatureTable)
                and table.matrix.shape[1] == len(feat)):
            fail(f"the {side} features should be a table, a ({n}, n_features) matrix and (n_features, {d}) "
                 "parameters")
        for key in (f"{params}_m", f"{params}_v"):
            if np.shape(vars(est).get(key)) != feat.shape:
                fail(f"{key} should have shape {feat.shape}")
    context = vars(est).get("_ctx_E") is not None
    if context:
        E, combos, names = est._ctx_E, vars(est).get("_ctx_combos"), vars(est).get("_ctx_names")
        if not (isinstance(names, list) and isinstance(E, np.ndarray) and E.shape == (len(names), d)
                and isinstance(combos, np.ndarray) and combos.ndim == 2 and combos.shape[1] == len(names)
                and np.shape(vars(est).get("_ctx_mean")) == (len(names),)):
            fail(f"the context should have (n_features, {d}) parameters and (n_combinations, n_features) rows")
        for key in ("_ctx_m", "_ctx_v"):
            if np.shape(vars(est).get(key)) != E.shape:
                fail(f"{key} should have shape {E.shape}")
    if len(est._log):
        users, items, ratings, weights, *extra = est._log.coo()
        if len(extra) != int(context):
            fail("the rating log's context codes do not match the model's context")
        if extra and (extra[0].dtype.kind != "i" or extra[0].min() < 0 or extra[0].max() >= len(est._ctx_combos)):
            fail("the rating log's context codes are outside the model's contexts")
        if users.min() < 0 or users.max() >= n_users or items.min() < 0 or items.max() >= n_items:
            fail("the rating log refers to users or items outside the vocabularies")
        if not (np.isfinite(ratings).all() and np.isfinite(weights).all() and (weights >= 0).all()):
            fail("the rating log holds non-finite ratings or weights")
