"""MovieLens readers on small files the tests write in each format, the
fetcher's cache, checksum and offline routes (never the network), and the
generator's options."""

import hashlib
import io
import urllib.error
import zipfile

import numpy as np
import pytest

from sklearn_metarec import datasets
from sklearn_metarec.datasets import fetch_movielens, load_movielens, make_ratings

RATINGS = [(1, 10, 4, 881250949), (1, 20, 5, 881250950), (2, 10, 3, 891717742), (3, 30, 1, 878887116)]
GENRES_OF = {10: ["Action", "Comedy"], 20: ["Drama"], 30: []}
TITLES = {10: "Amélie (2001)", 20: "Heat (1995)", 30: "Nameless (unknown)"}
USERS = [(1, 24, "M", "technician", "85711"), (2, 53, "F", "other", "94043"), (3, 23, "M", "writer", "32067")]


def _100k_files():
    genre_lines = "".join(f"{g}|{n}\n" for n, g in enumerate(datasets.GENRES))
    item_lines = ""
    for item, title in TITLES.items():
        year = title[-5:-1] if title[-5:-1].isdigit() else ""
        flags = "|".join("1" if g in GENRES_OF[item] else "0" for g in datasets.GENRES)
        item_lines += f"{item}|{title}|01-Jan-{year}||http://x|{flags}\n"
    return {
        "u.data": "".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in RATINGS).encode(),
        "u.user": "".join("|".join(map(str, row)) + "\n" for row in USERS).encode(),
        "u.item": item_lines.encode("latin-1"),
        "u.genre": genre_lines.encode(),
    }


def _1m_files():
    return {
        "ratings.dat": "".join(f"{u}::{i}::{r}::{t}\n" for u, i, r, t in RATINGS).encode(),
        "users.dat": "".join(f"{u}::{g}::{a}::{o}::{z}\n" for u, a, g, o, z in USERS).encode(),
        "movies.dat": "".join(
            f"{i}::{t}::{'|'.join(GENRES_OF[i])}\n" for i, t in TITLES.items()
        ).encode("latin-1"),
    }


def _atomic_files():
    inter = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    inter += "".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in RATINGS)
    user = "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n"
    user += "".join("\t".join(map(str, row)) + "\n" for row in USERS)
    item = "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
    for i, t in TITLES.items():
        year = t[-5:-1] if t[-5:-1].isdigit() else ""
        item += f"{i}\t{t[:-7]}\t{year}\t{' '.join(GENRES_OF[i])}\n"
    return {"ml-100k.inter": inter.encode(), "ml-100k.user": user.encode(), "ml-100k.item": item.encode()}


def _write_dir(folder, files):
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


def _zip(files, prefix):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for name, data in files.items():
            z.writestr(prefix + name, data)
    return buffer.getvalue()


FORMATS = {"100k": _100k_files, "1m": _1m_files, "atomic": _atomic_files}


@pytest.mark.parametrize("variant", FORMATS)
@pytest.mark.parametrize("packed", [False, True])
def test_each_format_reads_the_same_data(tmp_path, variant, packed):
    files = FORMATS[variant]()
    if packed:
        path = tmp_path / "archive.zip"
        path.write_bytes(_zip(files, "recbole/dataset_example/ml-100k/" if variant == "atomic" else "ml/"))
    else:
        path = _write_dir(tmp_path / "deep" / "er", files)
    data = load_movielens(tmp_path if not packed else path)
    assert data.variant == variant
    np.testing.assert_array_equal(data.X, [[u, i] for u, i, _, _ in RATINGS])
    np.testing.assert_array_equal(data.y, [r for _, _, r, _ in RATINGS])
    np.testing.assert_array_equal(data.timestamp, [t for *_, t in RATINGS])
    assert data.X.dtype == np.int64 and data.y.dtype == np.float64
    users = data.user_features
    np.testing.assert_array_equal(users.user_id, [1, 2, 3])
    np.testing.assert_array_equal(users.age, [24, 53, 23])
    np.testing.assert_array_equal(users.gender, ["M", "F", "M"])
    np.testing.assert_array_equal(users.occupation, ["technician", "other", "writer"])
    items = data.item_features
    np.testing.assert_array_equal(items.item_id, [10, 20, 30])
    np.testing.assert_array_equal(items.year, [2001, 1995, np.nan])
    assert items.title[0].startswith("Amélie")  # latin-1 read as such
    assert data.genre_names[: len(datasets.GENRES)] == list(datasets.GENRES)
    for row, item in enumerate([10, 20, 30]):
        named = [g for g, flag in zip(data.genre_names, items.genres[row]) if flag]
        assert named == sorted(GENRES_OF[item], key=data.genre_names.index)


def test_as_frame(tmp_path):
    pytest.importorskip("pandas")
    data = load_movielens(_write_dir(tmp_path, _100k_files()), as_frame=True)
    assert list(data.frame.columns) == ["user_id", "item_id", "rating", "timestamp"]
    assert list(data.X.columns) == ["user_id", "item_id"]
    assert data.y.name == "rating"
    assert data.item_features.loc[10, "Action"] == 1 and data.item_features.loc[20, "Action"] == 0
    assert data.user_features.loc[2, "occupation"] == "other"


def test_ratings_only_and_errors(tmp_path):
    only = _write_dir(tmp_path / "a", {"u.data": _100k_files()["u.data"]})
    data = load_movielens(only)
    assert data.user_features is None and data.item_features is None and len(data.y) == 4
    with pytest.raises(ValueError, match="No MovieLens ratings file"):
        load_movielens(_write_dir(tmp_path / "b", {"README": b"x"}))
    with pytest.raises(ValueError, match="neither a folder nor a zip"):
        load_movielens(tmp_path / "missing")
    with pytest.raises(ValueError, match="u.data has 3 fields on line 1"):
        load_movielens(_write_dir(tmp_path / "c", {"u.data": b"1\t2\t3\n"}))


# -- fetch_movielens, with the network replaced ---------------------------------


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setattr(datasets.urllib.request, "urlopen", refuse)


def test_fetch_uses_the_cache_without_network(tmp_path, no_network, monkeypatch):
    payload = _zip(_100k_files(), "ml-100k/")
    (tmp_path / "movielens").mkdir()
    (tmp_path / "movielens" / "ml-100k.zip").write_bytes(payload)
    url = datasets._ARCHIVES["100k"][0]
    monkeypatch.setitem(datasets._ARCHIVES, "100k", (url, "md5", hashlib.md5(payload).hexdigest()))
    assert len(fetch_movielens(data_home=tmp_path).y) == 4


def test_fetch_without_network_says_what_to_do(tmp_path, no_network):
    with pytest.raises(OSError, match="pip download --no-deps recbole==1.2.1"):
        fetch_movielens(data_home=tmp_path)
    with pytest.raises(OSError, match="not in"):
        fetch_movielens(data_home=tmp_path, download_if_missing=False)
    assert not list((tmp_path / "movielens").glob("*.part"))


def test_fetch_checks_the_published_checksum(tmp_path, monkeypatch):
    payload = _zip(_100k_files(), "ml-100k/")
    monkeypatch.setattr(datasets.urllib.request, "urlopen", lambda url, timeout: io.BytesIO(payload))
    url = datasets._ARCHIVES["100k"][0]
    monkeypatch.setitem(datasets._ARCHIVES, "100k", (url, "md5", "0" * 32))
    with pytest.raises(OSError, match="not the published"):
        fetch_movielens(data_home=tmp_path)
    assert not (tmp_path / "movielens" / "ml-100k.zip").exists()  # a bad file is not kept
    monkeypatch.setitem(datasets._ARCHIVES, "100k", (url, "md5", hashlib.md5(payload).hexdigest()))
    assert len(fetch_movielens(data_home=tmp_path).y) == 4
    assert (tmp_path / "movielens" / "ml-100k.zip").exists()


def test_fetch_through_the_package_index(tmp_path, monkeypatch, no_network):
    wheel = _zip(_atomic_files(), "recbole/dataset_example/ml-100k/")
    requirement, name, _, _ = datasets._WHEEL
    calls = []

    def fake_pip(req, folder):
        calls.append(req)
        (tmp_path / "movielens").mkdir(exist_ok=True)
        with open(f"{folder}/{name}", "wb") as f:
            f.write(wheel)

    monkeypatch.setattr(datasets, "_pip_download", fake_pip)
    monkeypatch.setattr(datasets, "_WHEEL", (requirement, name, "sha256", hashlib.sha256(wheel).hexdigest()))
    data = fetch_movielens(data_home=tmp_path, source="pypi")
    assert calls == [requirement] and data.variant == "atomic" and len(data.y) == 4
    assert len(fetch_movielens(data_home=tmp_path).y) == 4  # cached now: pip is not called again
    assert calls == [requirement]


def test_fetch_rejects_bad_options(tmp_path):
    with pytest.raises(ValueError, match="variant"):
        fetch_movielens("20m", data_home=tmp_path)
    with pytest.raises(ValueError, match="source"):
        fetch_movielens(source="kaggle", data_home=tmp_path)
    with pytest.raises(ValueError, match="Only MovieLens-100k"):
        fetch_movielens("1m", source="pypi", data_home=tmp_path)


# -- the generator's options ----------------------------------------------------


def test_options_leave_the_default_draws_alone():
    X, y = make_ratings(n_users=200, n_items=80, random_state=5)
    data = make_ratings(n_users=200, n_items=80, random_state=5, as_bunch=True)
    np.testing.assert_array_equal(data.X, X)
    np.testing.assert_array_equal(data.y, y)


def test_drift_changes_later_ratings_only():
    X, y = make_ratings(n_users=300, n_items=80, integer=False, random_state=1)
    Xd, yd = make_ratings(n_users=300, n_items=80, integer=False, drift=2.0, random_state=1)
    np.testing.assert_array_equal(X, Xd)
    first = np.r_[True, X[1:, 0] != X[:-1, 0]]
    last = np.r_[X[1:, 0] != X[:-1, 0], True]
    np.testing.assert_allclose(yd[first], y[first])  # no time has passed yet
    assert np.mean(np.abs(yd[last] - y[last])) > 0.3


def test_implicit_labels_are_the_liked_ratings():
    X, y = make_ratings(n_users=100, n_items=50, random_state=2)
    _, labels = make_ratings(n_users=100, n_items=50, implicit=True, random_state=2)
    np.testing.assert_array_equal(labels, (y >= 4).astype(float))
    assert 0.1 < labels.mean() < 0.9


def test_side_features_follow_the_clusters():
    data = make_ratings(n_users=600, n_items=100, as_bunch=True, random_state=0)
    label = data.user_features.argmax(axis=1)
    assert data.user_features.shape == (600, 6)
    assert 0.6 < np.mean(label == data.user_cluster) < 0.85
    assert data.item_features.shape == (100, 8)
    assert 0.05 < data.item_features.mean() < 0.95
    users = data.X[:, 0]
    for u in range(0, 600, 50):
        assert np.all(np.diff(data.timestamp[users == u]) > 0)


def test_generator_rejects_bad_options():
    with pytest.raises(ValueError, match="drift"):
        make_ratings(drift=-1.0)
    with pytest.raises(ValueError, match="n_genres"):
        make_ratings(n_genres=0)


def test_a_ratings_file_without_its_timestamp_column_is_refused(tmp_path):
    # 4 lines of 3 fields make 12 values, a multiple of 4: read as a whole,
    # they parsed into 3 rows with shifted columns.
    (tmp_path / "u.data").write_text("1\t10\t5\n2\t10\t4\n3\t11\t3\n4\t12\t1\n")
    with pytest.raises(ValueError, match=r"u.data has 3 fields on line 1 where 4 are expected"):
        load_movielens(tmp_path)


def test_an_atomic_file_with_a_fractional_id_is_refused(tmp_path):
    # 1.7 used to become user 1.
    text = "user_id:token\titem_id:token\trating:float\n1\t10\t5\n1.7\t11\t4\n"
    (tmp_path / "ml.inter").write_text(text)
    with pytest.raises(ValueError, match="user_id field holds 1.7"):
        load_movielens(tmp_path)


@pytest.mark.parametrize("name, line, message", [
    ("u.user", "4|31|M\n", r"u.user has 3 fields on line 4 where 5 are expected"),
    ("u.user", "4|old|M|writer|1234\n", r"u.user holds 'old' in field 2 of line 4"),
    ("u.genre", "Western\n", r"u.genre has 1 fields on line 20 where 2 are expected"),
    ("u.item", "40|Short (1990)|01-Jan-1990\n", r"u.item has 3 fields on line 4 where 24 are expected"),
])
def test_short_or_bad_rows_in_side_files_are_named(tmp_path, name, line, message):
    files = _100k_files()
    files[name] += line.encode()
    with pytest.raises(ValueError, match=message):
        load_movielens(_write_dir(tmp_path, files))


@pytest.mark.parametrize("name, line, message", [
    ("users.dat", "4::M::25\n", r"users.dat has 3 fields on line 4 where 5 are expected"),
    ("movies.dat", "40::Short (1990)\n", r"movies.dat has 2 fields on line 4 where 3 are expected"),
    ("movies.dat", "x::Bad (1990)::Drama\n", r"movies.dat holds 'x' in field 1 of line 4"),
])
def test_short_or_bad_rows_in_1m_side_files_are_named(tmp_path, name, line, message):
    files = _1m_files()
    files[name] += line.encode()
    with pytest.raises(ValueError, match=message):
        load_movielens(_write_dir(tmp_path, files))


def test_a_zip_that_expands_past_the_bound_is_not_read(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "MAX_FILE_BYTES", 1000)
    with zipfile.ZipFile(tmp_path / "ml.zip", "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("ml-100k/u.data", b"1\t10\t4\t881250949\n" * 1000)  # 19 kB that compress to little
    assert (tmp_path / "ml.zip").stat().st_size < 1000
    with pytest.raises(ValueError, match="u.data in .* is larger than"):
        load_movielens(tmp_path / "ml.zip")


def test_a_damaged_cache_is_verified_removed_and_fetched_again(tmp_path, monkeypatch):
    payload = _zip(_100k_files(), "ml-100k/")
    downloads = []

    def serve(url, timeout):
        downloads.append(url)
        return io.BytesIO(payload)

    monkeypatch.setattr(datasets.urllib.request, "urlopen", serve)
    url = datasets._ARCHIVES["100k"][0]
    monkeypatch.setitem(datasets._ARCHIVES, "100k", (url, "md5", hashlib.md5(payload).hexdigest()))
    assert len(fetch_movielens(data_home=tmp_path).y) == 4
    cached = tmp_path / "movielens" / "ml-100k.zip"
    # A valid zip, but not the published one: it is no longer accepted.
    cached.write_bytes(_zip({**_100k_files(), "u.data": b"9\t9\t1\t1\n"}, "ml-100k/"))
    with pytest.raises(OSError, match="cached copy was damaged or replaced"):
        fetch_movielens(data_home=tmp_path, download_if_missing=False)
    assert not cached.exists()
    cached.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="Fetching it again"):
        assert len(fetch_movielens(data_home=tmp_path).y) == 4
    assert len(downloads) == 2 and cached.read_bytes() == payload
