"""Parameters that size memory or loops are bounded, every updating call
validates them again, and concurrent writers are serialized."""

import pickle
import threading

import numpy as np
import pytest

from sklearn_metarec import (EmpiricalBayesRecommender, FactorizationRecommender, MAMLFactorizationRecommender,
                             MetaSGDFactorizationRecommender, ReptileFactorizationRecommender)
from sklearn_metarec.datasets import make_ratings

SMALL = {
    MAMLFactorizationRecommender: dict(n_factors=3, n_epochs=2),
    MetaSGDFactorizationRecommender: dict(n_factors=3, n_epochs=2),
    ReptileFactorizationRecommender: dict(n_factors=3, n_epochs=2),
    FactorizationRecommender: dict(n_factors=3, n_epochs=2),
}


def data():
    return make_ratings(n_users=40, n_items=20, mean_ratings=8, min_ratings=3, random_state=0)


def state(model):
    """Everything a call could change, as bytes."""
    return pickle.dumps({k: v for k, v in vars(model).items() if k != "_lock"})


# These values crashed the process (segfault, heap corruption) or hung: they
# sized an allocation or a loop in the kernels.
UNBOUNDED = [("n_inner_steps", 2**40), ("n_inner_steps", 10**9), ("n_negatives", 2**62), ("n_factors", 10**6),
             ("n_factors", True), ("n_support", (0, 10**20)), ("n_support", 10**20)]


@pytest.mark.parametrize("cls, param, value", [
    (cls, param, value) for cls in SMALL for param, value in UNBOUNDED if param in cls().get_params()])
def test_unbounded_sizes_are_refused_with_the_parameter_named(cls, param, value):
    X, y = data()
    with pytest.raises(ValueError, match=param):
        cls(**{**SMALL[cls], param: value, "loss": "logistic" if param == "n_negatives" else "squared"}).fit(X, y)


INVALID_LATER = [("n_negatives", -1), ("n_inner_steps", -3), ("n_support", (-5, -1)), ("init_std", -1.0),
                 ("n_factors", 8), ("loss", "logistic")]


@pytest.mark.parametrize("cls, param, value", [
    (cls, param, value) for cls in SMALL for param, value in INVALID_LATER if param in cls().get_params()]
    + [(EmpiricalBayesRecommender, "min_ratings", 1)])
def test_updating_calls_validate_again_and_change_nothing_on_error(cls, param, value):
    # partial_fit and fold_in used to run with parameters set after fit,
    # unchecked; n_factors and loss fix the model's structure.
    X, y = data()
    model = cls(**SMALL.get(cls, {}), random_state=0).fit(X, y)
    good = model.get_params()[param]
    before = state(model)
    model.set_params(**{param: value})
    new = np.column_stack([np.full(3, 900), X[:3, 1]])
    for call in (model.partial_fit, model.fold_in):
        with pytest.raises(ValueError, match=param):
            call(new, [5.0, 4.0, 3.0])
    model.set_params(**{param: good})
    assert state(model) == before
    model.fold_in(new, [5.0, 4.0, 3.0])  # usable again once the value is restored
    assert np.isfinite(model.predict(new)).all()


@pytest.mark.parametrize("cls", [MAMLFactorizationRecommender, EmpiricalBayesRecommender])
def test_concurrent_fold_ins_equal_serial_ones(cls):
    # Writers are serialized by the estimator: 8 threads folding in 8 new
    # users give each of them what a serial fold-in gives.
    X, y = data()
    model = cls(**SMALL.get(cls, {}), random_state=0).fit(X, y)
    serial = pickle.loads(pickle.dumps(model))
    rng = np.random.default_rng(0)
    batches = [(np.column_stack([np.full(4, 1000 + t), rng.choice(X[:, 1], 4, replace=False)]),
                rng.integers(1, 6, 4).astype(float)) for t in range(8)]
    for Xb, yb in batches:
        serial.fold_in(Xb, yb)
    barrier = threading.Barrier(8)

    def work(Xb, yb):
        barrier.wait()
        model.fold_in(Xb, yb)

    threads = [threading.Thread(target=work, args=b) for b in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    query = np.column_stack([np.repeat(np.arange(1000, 1008), 5), np.tile(X[:5, 1], 8)])
    np.testing.assert_array_equal(model.predict(query), serial.predict(query))
    assert len(model.user_ids_) == len(serial.user_ids_)


def test_pickles_leave_the_lock_behind():
    X, y = data()
    model = MAMLFactorizationRecommender(**SMALL[MAMLFactorizationRecommender], random_state=0).fit(X, y)
    assert "_lock" in vars(model)
    copy = pickle.loads(pickle.dumps(model))
    assert "_lock" not in vars(copy)
    copy.fold_in([[500, X[0, 1]]], [4.0])
    assert copy._rwlock() is not model._rwlock()


@pytest.mark.parametrize("cls", list(SMALL))
def test_a_diverging_partial_fit_changes_nothing(cls):
    # It used to keep its ratings, so that later clean calls diverged again.
    X, y = data()
    model = cls(**SMALL[cls], random_state=0).fit(X, y)
    new = np.column_stack([np.full(6, 900), X[:6, 1]])
    # Meta-SGD's inner steps are learned, so its outer step is the one to blow up.
    model.set_params(**{MAMLFactorizationRecommender: {"inner_lr": 1e6}, ReptileFactorizationRecommender: {"inner_lr": 1e6},
                        MetaSGDFactorizationRecommender: {"meta_lr": 1e8}, FactorizationRecommender: {"lr": 1e6}}[cls])
    with pytest.raises(ValueError, match="diverged"):
        for _ in range(5):  # a step this large diverges within a few calls
            before, pred = state(model), model.predict(X)
            model.partial_fit(new, np.full(6, 5.0))
    assert state(model) == before
    np.testing.assert_array_equal(model.predict(X), pred)


def test_a_failing_fold_in_changes_nothing():
    X, y = data()
    model = MAMLFactorizationRecommender(**SMALL[MAMLFactorizationRecommender], random_state=0).fit(X, y)
    before = state(model)
    pd = pytest.importorskip("pandas")
    with pytest.raises(TypeError, match="item ids"):
        model.fold_in(pd.DataFrame({"user": [900, 901], "item": ["a string item", "another"]}), [4.0, 5.0])
    assert state(model) == before
    # A diverging fold-in: a new user and a new item, then nothing of them.
    model.set_params(inner_lr=1e100)
    with pytest.raises(ValueError, match="diverged"):
        model.fold_in(np.array([[900, X[0, 1]], [900, 12345]]), [5.0, 1.0])
    model.set_params(inner_lr="auto")
    assert state(model) == before
    assert 900 not in model.user_ids_ and 12345 not in model.item_ids_


def test_a_failing_refit_leaves_the_fitted_model():
    X, y = data()
    model = MAMLFactorizationRecommender(**SMALL[MAMLFactorizationRecommender], random_state=0).fit(X, y)
    before = state(model)
    with pytest.raises(ValueError):
        model.fit(X, np.full(len(y), np.nan))
    with pytest.raises(ValueError, match="diverged"):
        model.set_params(inner_lr=1e30).fit(X, y)
    model.set_params(inner_lr="auto")
    assert state(model) == before


@pytest.mark.parametrize("bad", [[None], [np.nan], [0, np.inf], np.array([1, None], dtype=object)])
def test_recommend_refuses_missing_ids_as_predict_does(bad):
    X, y = data()
    model = MAMLFactorizationRecommender(**SMALL[MAMLFactorizationRecommender], random_state=0).fit(X, y)
    with pytest.raises(ValueError, match="users contains NaN"):
        model.recommend(bad)
    with pytest.raises(ValueError, match="items contains NaN"):
        model.recommend([0], items=bad)


def test_uint64_ids_above_2_63_never_merge_with_each_other():
    # int64 and uint64 ids used to meet in float64, where 2**63 + 1 and
    # 2**63 + 3 are one number.
    X = np.array([[1, 1], [2, 1], [2, 2], [3, 2]], dtype=np.int64)
    model = EmpiricalBayesRecommender().fit(X, [4.0, 3.0, 2.0, 5.0])
    big = np.array([[2**63 + 1, 1], [2**63 + 3, 2]], dtype=np.uint64)
    model.fold_in(big, [5.0, 1.0])
    assert len(model.user_ids_) == 5 and {2**63 + 1, 2**63 + 3} <= set(model.user_ids_.tolist())
    high, low = model.predict(big)
    assert high > low  # each kept its own rating
    np.testing.assert_array_equal(model.predict(X), EmpiricalBayesRecommender().fit(X, [4.0, 3.0, 2.0, 5.0])
                                  .predict(X))
    # An int64 id next to them is its own user too: unknown here.
    unknown = model.predict(np.array([[2**63 - 1, 1]], dtype=np.int64))
    assert unknown[0] != high


def test_errors_inside_parallel_kernels_surface_as_themselves():
    # Numba hands an exception raised in a parallel region to Python as a
    # SystemError ("returned a result with an exception set"); every kernel
    # call runs under numba_threads, which re-raises the real exception.
    import numba

    from sklearn_metarec._base import numba_threads

    @numba.njit(parallel=True)
    def allocate(n):
        total = 0.0
        for i in numba.prange(4):
            total += np.empty(n).shape[0]
        return total

    with pytest.raises(SystemError):
        allocate(2**62)
    for n_jobs in (None, 1, 2):
        with pytest.raises(ValueError, match="array is too big"):
            with numba_threads(n_jobs):
                allocate(2**62)
    threads = numba.get_num_threads()
    with pytest.raises(ValueError):
        with numba_threads(1):
            allocate(2**62)
    assert numba.get_num_threads() == threads  # restored after the error


@pytest.mark.parametrize("cls", [MAMLFactorizationRecommender, EmpiricalBayesRecommender])
def test_readers_never_see_a_writer_half_done(cls, monkeypatch):
    # fold_in adds a user to the vocabulary (with the prior's row) before
    # it solves for its parameters. A reader arriving in between used to see
    # the user with the prior's prediction (all-zero rows before that fix);
    # it now waits for the writer and sees the finished model.
    X, y = data()
    model = cls(**SMALL.get(cls, {}), random_state=0).fit(X, y)
    new = np.column_stack([np.full(4, 1000), X[:4, 1]])
    expected = pickle.loads(pickle.dumps(model)).fold_in(new, [5.0, 5.0, 1.0, 5.0]).predict(new)
    inside, release = threading.Event(), threading.Event()
    solve = type(model)._solve_users

    def paused(self, *args):
        inside.set()
        release.wait(10)
        return solve(self, *args)

    monkeypatch.setattr(type(model), "_solve_users", paused)
    writer = threading.Thread(target=model.fold_in, args=(new, [5.0, 5.0, 1.0, 5.0]))
    writer.start()
    assert inside.wait(10)
    assert 1000 in model.user_ids_.tolist()  # the writer is half done
    seen = {}
    reader = threading.Thread(target=lambda: seen.update(predict=model.predict(new),
                                                         recommend=model.recommend(1000, n=3)))
    reader.start()
    reader.join(0.3)
    assert reader.is_alive()  # held back while the writer is inside
    release.set()
    writer.join(10)
    reader.join(10)
    np.testing.assert_array_equal(seen["predict"], expected)


def test_the_read_write_lock():
    from sklearn_metarec._base import _ReadWriteLock

    lock = _ReadWriteLock()
    order = []
    done_writing = threading.Event()

    def write():
        with lock.writing():
            order.append("writer")
            done_writing.wait(5)

    def read():
        with lock.reading():
            order.append("late reader")

    with lock.reading():
        with lock.reading():  # readers share the lock
            pass
        writer = threading.Thread(target=write)
        writer.start()
        writer.join(0.2)
        assert writer.is_alive() and not order  # the writer waits for the reader in progress
        late = threading.Thread(target=read)
        late.start()
        late.join(0.2)
        assert late.is_alive() and not order  # and a waiting writer holds new readers back
    writer.join(0.2)
    assert order == ["writer"]
    late.join(0.2)
    assert late.is_alive()  # the writer is inside: the reader waits
    done_writing.set()
    writer.join(5)
    late.join(5)
    assert order == ["writer", "late reader"]
    # The writing thread may read and write again inside its own write.
    with lock.writing():
        with lock.reading():
            with lock.writing():
                pass
    assert lock._writer is None and lock._readers == 0


def test_float_ids_are_kept_as_given():
    # The README's rule: a float id is an id of its own (1.5 is neither 1
    # nor 2), and 2.0 is the same id as 2, as in numeric columns.
    X = np.array([[1.0, 10.0], [1.5, 10.0], [2.0, 11.0], [1.5, 11.0], [1.0, 11.0], [2.0, 10.0]])
    model = FactorizationRecommender(n_factors=2, n_epochs=1, random_state=0).fit(X, [5.0, 1.0, 4.0, 1.0, 5.0, 4.0])
    assert model.user_ids_.tolist() == [1.0, 1.5, 2.0]
    model.fold_in(np.array([[2, 10]]), [3.0])
    assert model.user_ids_.tolist() == [1.0, 1.5, 2.0]  # 2 is the known 2.0
    assert model.predict([[1.5, 10.0]])[0] != model.predict([[1.0, 10.0]])[0]


def test_a_few_users_ratings_without_resorting_the_log(monkeypatch):
    # user_csr gives what the full view gives for those users, rows in the
    # order asked, with ratings appended since the full view was built.
    from sklearn_metarec._data import RatingLog

    rng = np.random.default_rng(0)
    log = RatingLog()
    n_users = 30
    for size in (200, 7, 1, 13, 40):
        log.append(rng.integers(0, n_users, size), rng.integers(0, 50, size), rng.normal(size=size),
                   rng.uniform(size=size))
        if size == 200:
            log.csr(n_users)  # a full view, then appends after it
    log.append(np.array([n_users]), np.array([3]), np.array([1.0]), np.array([1.0]))  # a new user
    users = np.array([n_users, 4, 17, 0, 29, 11])
    mini = log.user_csr(users, n_users + 1)
    full = log.csr(n_users + 1)
    for b, u in enumerate(users):
        for got, want in zip(mini[1:], full[1:]):
            np.testing.assert_array_equal(got[mini[0][b]:mini[0][b + 1]], want[full[0][u]:full[0][u + 1]])
    assert log.user_csr(np.array([], dtype=np.int64), n_users + 1)[0].tolist() == [0]
    # Serving calls never rebuild the full view below the merge bound.
    model = MAMLFactorizationRecommender(n_factors=3, n_epochs=1, random_state=0).fit(*data())
    model.recommend(model.user_ids_[:2], n=3)
    calls = []
    full_view = RatingLog.csr

    def counted(self, n):
        calls.append(n)
        return full_view(self, n)

    monkeypatch.setattr(RatingLog, "csr", counted)
    known = model.user_ids_[0]
    for k in range(5):
        model.fold_in([[known, model.item_ids_[k]]], [4.0])
        model.recommend([known, -12345], n=3)
    assert calls == []


def test_parameters_changed_in_place_are_validated_again():
    # Updating calls skip validation when the parameters are those validated
    # last; a list changed in place must not slip through.
    X, y = data()
    support = [2, 5]
    model = MAMLFactorizationRecommender(n_factors=3, n_epochs=1, n_support=support, random_state=0).fit(X, y)
    model.partial_fit(X[:10], y[:10])
    support[:] = [-5, -1]
    with pytest.raises(ValueError, match="n_support"):
        model.partial_fit(X[:10], y[:10])
    support[:] = [2, 5]
    model.partial_fit(X[:10], y[:10])
    model.set_params(n_inner_steps=2**40)
    with pytest.raises(ValueError, match="n_inner_steps"):
        model.fold_in(X[:3], y[:3])
