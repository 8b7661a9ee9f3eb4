"""The safe model format: save_model / load_model round trips, and files
that are damaged or crafted are refused with a clear error."""

import io
import json
import pickle

import numpy as np
import pytest
from sklearn.linear_model import Ridge

from sklearn_metarec import (
    EmpiricalBayesRecommender,
    FactorizationRecommender,
    MAMLFactorizationRecommender,
    MetaSGDFactorizationRecommender,
    ReptileFactorizationRecommender,
    load_model,
    save_model,
)
from sklearn_metarec.datasets import make_ratings

X, Y = make_ratings(n_users=40, n_items=25, random_state=0)
NEW = np.column_stack([np.repeat([10**6, 10**7], 3), X[:6, 1]])
NEW_Y = np.array([5.0, 1.0, 4.0, 2.0, 3.0, 5.0])

CASES = {
    "maml": lambda: MAMLFactorizationRecommender(n_factors=4, n_epochs=2, random_state=0),
    "maml_early_stopping": lambda: MAMLFactorizationRecommender(n_factors=4, n_epochs=3, early_stopping=True,
                                                                n_iter_no_change=2, random_state=0),
    "meta_sgd": lambda: MetaSGDFactorizationRecommender(n_factors=4, n_epochs=2, random_state=0),
    "reptile": lambda: ReptileFactorizationRecommender(n_factors=4, n_epochs=2, random_state=0),
    "factorization": lambda: FactorizationRecommender(n_factors=4, n_epochs=2, random_state=0),
    "empirical_bayes": lambda: EmpiricalBayesRecommender(),
    "random_state_object": lambda: MAMLFactorizationRecommender(n_factors=4, n_epochs=2,
                                                                random_state=np.random.RandomState(3)),
}


def round_trip(model):
    buffer = io.BytesIO()
    save_model(model, buffer)
    buffer.seek(0)
    return load_model(buffer)


@pytest.mark.parametrize("name", CASES)
def test_round_trip_predicts_and_trains_on_identically(name):
    model = CASES[name]().fit(X, Y)
    loaded = round_trip(model)
    assert type(loaded) is type(model)
    params = {k: v for k, v in model.get_params().items() if k != "random_state"}
    assert {k: v for k, v in loaded.get_params().items() if k != "random_state"} == params
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    for a, b in zip(loaded.recommend(X[:5, 0], n=4), model.recommend(X[:5, 0], n=4)):
        np.testing.assert_array_equal(a, b)
    # The optimizer state, rating log and random state came along: further
    # training and fold-in give the same model, bit for bit.
    model.fold_in(NEW, NEW_Y).partial_fit(X[:50], Y[:50])
    loaded.fold_in(NEW, NEW_Y).partial_fit(X[:50], Y[:50])
    probe = np.vstack([X, NEW])
    np.testing.assert_array_equal(loaded.predict(probe), model.predict(probe))


@pytest.mark.parametrize("loss", ["logistic", "bpr"])
def test_round_trip_of_implicit_losses(loss):
    positives = X[Y >= 4]
    model = MAMLFactorizationRecommender(n_factors=3, n_epochs=2, loss=loss, random_state=0).fit(positives)
    loaded = round_trip(model)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    # Serving draws its negatives from a seed of its own, which came along.
    np.testing.assert_array_equal(loaded.fold_in(NEW).predict(NEW), model.fold_in(NEW).predict(NEW))


@pytest.mark.parametrize("ids", [
    np.array([f"user {u}" for u in range(40)]),
    np.array([2**63 + u for u in range(40)], dtype=np.uint64),
    np.array([u if u % 2 else f"s{u}" for u in range(40)], dtype=object),
], ids=["strings", "uint64", "mixed"])
def test_round_trip_keeps_every_kind_of_id(ids):
    users = ids[X[:, 0]]
    if ids.dtype == np.uint64:
        data = np.column_stack([users, X[:, 1].astype(np.uint64)])
    else:
        data = np.empty((len(X), 2), dtype=object)
        data[:, 0], data[:, 1] = users, X[:, 1]
    model = FactorizationRecommender(n_factors=3, n_epochs=1, random_state=0).fit(data, Y)
    if ids.dtype == np.uint64:
        model.fold_in(np.array([[7, X[0, 1]]]), [4.0])  # int64 joins uint64 above 2**63: Python ints
        assert model.user_ids_.dtype == object
    loaded = round_trip(model)
    assert loaded.user_ids_.tolist() == model.user_ids_.tolist()
    assert [type(u) for u in loaded.user_ids_] == [type(u) for u in model.user_ids_]
    np.testing.assert_array_equal(loaded.predict(data[:20]), model.predict(data[:20]))


def test_pandas_feature_names_survive():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"user": X[:, 0], "item": X[:, 1]})
    model = FactorizationRecommender(n_factors=3, n_epochs=1, random_state=0).fit(frame, Y)
    loaded = round_trip(model)
    assert loaded.feature_names_in_.tolist() == ["user", "item"]
    np.testing.assert_array_equal(loaded.predict(frame), model.predict(frame))


def test_what_cannot_be_saved_is_named():
    with pytest.raises(TypeError, match="sklearn_metarec"):
        save_model(Ridge().fit([[0.0], [1.0]], [0.0, 1.0]), io.BytesIO())
    with pytest.raises(ValueError, match="not fitted"):
        save_model(FactorizationRecommender(), io.BytesIO())
    model = FactorizationRecommender(n_factors=3, n_epochs=1).fit(X, Y)
    model.set_params(random_state=object())  # only stored, never used once fitted
    with pytest.raises(TypeError, match="Parameter 'random_state'.*pickle"):
        save_model(model, io.BytesIO())


# -- crafted and damaged files -------------------------------------------------


def saved_parts(model=None):
    buffer = io.BytesIO()
    save_model(model or MAMLFactorizationRecommender(n_factors=3, n_epochs=1, random_state=0).fit(X, Y), buffer)
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as archive:
        parts = {k: archive[k] for k in archive.files}
    return json.loads(str(parts.pop("manifest"))), parts


def write(manifest, parts, **extra):
    buffer = io.BytesIO()
    np.savez(buffer, manifest=np.array(json.dumps(manifest)), **parts, **extra)
    buffer.seek(0)
    return buffer


def array_key(manifest, attribute):
    return manifest["state"][attribute]["key"]


def test_files_hold_no_pickles():
    manifest, parts = saved_parts()
    assert manifest["class"] == "MAMLFactorizationRecommender"
    assert all(a.dtype.kind in "biufU" for a in parts.values())


def tamper_class(manifest, parts):
    manifest["class"] = "os.system"


def tamper_nan(manifest, parts):
    parts[array_key(manifest, "_theta")][3] = np.nan


def tamper_length(manifest, parts):
    key = array_key(manifest, "_theta")
    parts[key] = parts[key][:-2]


def tamper_users(manifest, parts):
    key = array_key(manifest, "_user_buf")
    parts[key] = parts[key][:-1]


def tamper_log(manifest, parts):
    items = manifest["state"]["_log"]["coo"]["v"][1]["key"]
    parts[items][0] = 10**9  # a kernel would read far outside the item table


def tamper_structure(manifest, parts):
    manifest["params"]["n_factors"]["v"] = 5


def tamper_missing(manifest, parts):
    del parts[array_key(manifest, "_theta")]


def tamper_version(manifest, parts):
    manifest["version"] = 99


def tamper_entry(manifest, parts):
    manifest["state"]["_theta"] = {"t": "eval", "v": "__import__('os')"}


def tamper_duplicate_ids(manifest, parts):
    key = manifest["state"]["_user_vocab"]["ids"]["key"]
    parts[key][1] = parts[key][0]


@pytest.mark.parametrize("tamper, message", [
    (tamper_class, "unknown estimator class"),
    (tamper_nan, "NaN or infinite"),
    (tamper_length, "parameter vector"),
    (tamper_users, "user table"),
    (tamper_log, "outside the vocabularies"),
    (tamper_structure, "built for"),
    (tamper_missing, "missing"),
    (tamper_version, "version"),
    (tamper_entry, "unknown entry type"),
    (tamper_duplicate_ids, "id twice"),
])
def test_crafted_files_are_refused(tamper, message):
    manifest, parts = saved_parts()
    tamper(manifest, parts)
    with pytest.raises(ValueError, match=message):
        load_model(write(manifest, parts))


def test_invalid_parameters_are_refused():
    manifest, parts = saved_parts()
    manifest["params"]["n_inner_steps"]["v"] = -3
    with pytest.raises(ValueError, match="n_inner_steps"):
        load_model(write(manifest, parts))


def test_pickles_and_damaged_files_are_refused(tmp_path):
    manifest, parts = saved_parts()
    evil = np.array([object()], dtype=object)
    buffer = io.BytesIO()
    np.savez(buffer, manifest=np.array(json.dumps(manifest)), **{**parts, array_key(manifest, "_theta"): evil})
    buffer.seek(0)
    with pytest.raises(ValueError, match="save_model"):
        load_model(buffer)
    with pytest.raises(ValueError, match="save_model"):
        load_model(io.BytesIO(pickle.dumps(MAMLFactorizationRecommender())))
    path = tmp_path / "model.npz"
    save_model(MAMLFactorizationRecommender(n_factors=3, n_epochs=1).fit(X, Y), path)
    path.write_bytes(path.read_bytes()[:200])  # truncated
    with pytest.raises(ValueError, match="damaged"):
        load_model(path)
