"""Data sets: MovieLens loaders and a synthetic generator of ratings with
taste clusters."""

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import warnings
import zipfile

import numpy as np
from sklearn.datasets import get_data_home
from sklearn.utils import Bunch, check_random_state


DAYPARTS = ("night", "morning", "afternoon", "evening")
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def time_context(timestamp, *, utc_offset_hours=0):
    """Context columns from Unix times: the weekday and the part of the day.

    For ``context_columns``: ``np.column_stack([X, time_context(ts)])``
    adds two categorical columns (positions 2 and 3).

    Parameters
    ----------
    timestamp : array-like of shape (n_ratings,)
        Seconds since 1970-01-01 UTC.
    utc_offset_hours : float, default=0
        The users' time zone, so that "evening" is the users' evening.

    Returns
    -------
    context : ndarray of shape (n_ratings, 2), dtype object
        Weekday ("Mon" ... "Sun") and part of the day ("night" 0-6 h,
        "morning" 6-12 h, "afternoon" 12-18 h, "evening" 18-24 h).

    Examples
    --------
    >>> from sklearn_metarec.datasets import time_context
    >>> time_context([0, 3600 * 20]).tolist()  # 1970-01-01 was a Thursday
    [['Thu', 'night'], ['Thu', 'evening']]
    """
    seconds = np.asarray(timestamp, dtype=np.float64)
    if seconds.ndim != 1 or not np.isfinite(seconds).all():
        raise ValueError("timestamp must be a 1-D array of finite Unix times.")
    seconds = seconds + 3600.0 * utc_offset_hours
    days = np.floor(seconds / 86400.0).astype(np.int64)
    hours = (seconds - 86400.0 * days) / 3600.0
    weekday = np.asarray(WEEKDAYS, dtype=object)[(days + 3) % 7]  # day 0 was a Thursday
    daypart = np.asarray(DAYPARTS, dtype=object)[np.minimum((hours // 6).astype(np.int64), 3)]
    return np.column_stack([weekday, daypart])


def make_ratings(
    n_users=1000,
    n_items=300,
    *,
    n_clusters=6,
    n_factors=8,
    mean_ratings=40,
    min_ratings=5,
    noise=0.5,
    rating_scale=(1, 5),
    integer=True,
    drift=0.0,
    implicit=False,
    n_genres=8,
    as_bunch=False,
    random_state=None,
):
    """Generate explicit ratings from a biased factorization model.

    Users are drawn around a few taste clusters, so that a few ratings say
    much about a user's cluster: the setting where meta-learning pays.
    Activity is long-tailed (log-normal), items are picked with a long-tailed
    popularity, and ratings get Gaussian noise, then are clipped to
    ``rating_scale`` (and rounded when ``integer``).

    Each user's items are drawn exactly, without replacement, by Gumbel
    top-k over the whole catalogue, so generation costs n_users x n_items
    (about 100 s for 10M ratings over 20,000 items), more than fitting
    does at that size.

    Optionally, tastes drift over time, ratings become implicit 0/1 labels,
    and (with ``as_bunch``) the data come with timestamps and side features
    correlated with the taste clusters: a noisy cluster label per user, and
    genres per item that follow the item's factors.

    Parameters
    ----------
    n_users : int, default=1000
        Number of users.
    n_items : int, default=300
        Number of items.
    n_clusters : int, default=6
        Number of taste clusters.
    n_factors : int, default=8
        Dimension of the true latent factors.
    mean_ratings : float, default=40
        Mean number of ratings per user.
    min_ratings : int, default=5
        Fewest ratings a user has.
    noise : float, default=0.5
        Standard deviation of the rating noise.
    rating_scale : (float, float), default=(1, 5)
        Lowest and highest rating.
    integer : bool, default=True
        Round ratings to integers.
    drift : float, default=0.0
        Interest drift: over its history, in time order, each user's factors
        move by ``drift`` times a random vector drawn as the cluster centres
        are, so ``drift=1`` carries a user about as far as from one taste
        cluster to another.
    implicit : bool, default=False
        Return 0/1 labels, 1 where the rating is in the top quarter of
        ``rating_scale`` (4 or 5 on 1..5): "liked it".
    n_genres : int, default=8
        Number of item genres among the side features.
    as_bunch : bool, default=False
        Return a Bunch with timestamps and side features instead of (X, y).
    random_state : int, RandomState instance or None, default=None
        Seed. The default options draw the same numbers as before these
        options existed, so (X, y) of a seed never changes.

    Returns
    -------
    X : ndarray of shape (n_ratings, 2), dtype int64
        (user id, item id) rows, grouped by user, each user's rows in time
        order.
    y : ndarray of shape (n_ratings,)
        Ratings (or 0/1 labels).
    data : Bunch
        With ``as_bunch``, instead of (X, y): ``X``, ``y``, ``timestamp``
        (int64 seconds; increasing within each user), ``user_features``
        (n_users, n_clusters) one-hot of a cluster label that is right 70%
        of the time, ``item_features`` (n_items, n_genres) 0/1 genres,
        ``user_cluster``, the true clusters.

    Examples
    --------
    >>> from sklearn_metarec.datasets import make_ratings
    >>> X, y = make_ratings(n_users=50, n_items=30, random_state=0)
    >>> X.shape[1], float(y.min()) >= 1, float(y.max()) <= 5
    (2, True, True)
    """
    if min(n_users, n_items, n_clusters, n_factors, min_ratings, n_genres) < 1:
        raise ValueError(
            "n_users, n_items, n_clusters, n_factors, min_ratings and n_genres must be >= 1."
        )
    if not np.isfinite(drift) or drift < 0:
        raise ValueError(f"drift must be a finite number >= 0; got {drift!r}.")
    if min_ratings > n_items:
        raise ValueError(f"min_ratings={min_ratings} exceeds n_items={n_items}.")
    if mean_ratings < min_ratings:
        raise ValueError(f"mean_ratings={mean_ratings} is below min_ratings={min_ratings}.")
    low, high = rating_scale
    if not low < high:
        raise ValueError(f"rating_scale must be (low, high) with low < high; got {rating_scale}.")
    rng = check_random_state(random_state)

    centers = rng.normal(0.0, 1.0, (n_clusters, n_factors))
    cluster = rng.randint(n_clusters, size=n_users)
    P = centers[cluster] + rng.normal(0.0, 0.3, (n_users, n_factors))
    Q = rng.normal(0.0, 0.8 / np.sqrt(n_factors), (n_items, n_factors))
    # Cluster-level bias too, so that a user's bias is partly predictable.
    user_bias = rng.normal(0.0, 0.3, n_clusters)[cluster] + rng.normal(0.0, 0.2, n_users)
    item_bias = rng.normal(0.0, 0.4, n_items)
    mid = (low + high) / 2 + 0.25 * (high - low) / 4

    extra = mean_ratings - min_ratings
    counts = min_ratings + np.floor(rng.lognormal(np.log(max(extra, 1e-9)) - 0.5, 1.0, n_users))
    counts = np.minimum(counts, n_items).astype(np.int64)
    log_pop = -0.8 * np.log1p(rng.permutation(n_items))

    users, items = [], []
    chunk = max(1, 2_000_000 // n_items)  # bounds the Gumbel matrix's memory
    for start in range(0, n_users, chunk):
        stop = min(start + chunk, n_users)
        # Gumbel top-k: each user's items, without replacement, by popularity.
        keys = log_pop + rng.gumbel(size=(stop - start, n_items))
        ranked = np.argsort(-keys, axis=1)
        take = np.arange(n_items) < counts[start:stop, None]
        users.append(np.repeat(np.arange(start, stop), counts[start:stop]))
        items.append(ranked[take])
    users = np.concatenate(users)
    items = np.concatenate(items)

    y = mid + user_bias[users] + item_bias[items] + np.einsum("nf,nf->n", P[users], Q[items])
    y = y + rng.normal(0.0, noise, len(y))
    # Everything below draws after the original stream, so that the default
    # (X, y) of a seed stays what it always was.
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    position = np.arange(len(users)) - starts[users]
    progress = position / np.maximum(counts[users] - 1, 1)  # 0 … 1 through the history
    if drift:
        direction = rng.normal(0.0, 1.0, (n_users, n_factors))
        y = y + drift * progress * np.einsum("nf,nf->n", direction[users], Q[items])
    if integer:
        y = np.rint(y)
    y = np.clip(y, low, high)
    if implicit:
        y = (y >= low + 0.75 * (high - low)).astype(np.float64)
    X = np.column_stack([users, items]).astype(np.int64)
    if not as_bunch:
        return X, y
    side = np.random.RandomState(rng.randint(2**31 - 1))
    first = side.randint(0, 3 * 365 * 86400, n_users)
    gaps = side.exponential(86400.0, len(users)).astype(np.int64) + 1
    timestamp = first[users] + np.cumsum(gaps) - np.cumsum(gaps)[starts][users]
    label = np.where(side.rand(n_users) < 0.7, cluster, side.randint(n_clusters, size=n_users))
    genres = Q @ side.normal(0.0, 1.0, (n_factors, n_genres)) > 0.5 / np.sqrt(n_factors)
    return Bunch(
        X=X, y=y, timestamp=timestamp.astype(np.int64),
        user_features=np.eye(n_clusters)[label], item_features=genres.astype(np.float64),
        user_cluster=cluster,
    )


# --------------------------------------------------------------------------
# MovieLens

# The 19 genres of ml-100k, in u.genre's order; other variants' genres map
# onto these names, and any new name is appended.
GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
    "Romance", "Sci-Fi", "Thriller", "War", "Western",
)

# Archives and their published checksums. GroupLens publishes MD5 sums next
# to its zips; the recbole wheel's SHA-256 is PyPI's.
_ARCHIVES = {
    "100k": ("https://files.grouplens.org/datasets/movielens/ml-100k.zip",
             "md5", "0e33842e24a9c977be4e0107933c0723"),
    "1m": ("https://files.grouplens.org/datasets/movielens/ml-1m.zip",
           "md5", "c4d9eecfca2ab87c1945afe126590906"),
}
# The largest file the readers take (decompressed): ml-1m's ratings.dat is
# 24 MiB; a bound keeps a crafted archive from filling memory.
MAX_FILE_BYTES = 256 << 20

_WHEEL = ("recbole==1.2.1", "recbole-1.2.1-py3-none-any.whl", "sha256",
          "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407")

_OFFLINE_HELP = (
    "MovieLens-100k also ships inside the recbole wheel on PyPI, which any "
    "machine that can reach a package index can get: call "
    "fetch_movielens('100k', source='pypi'), or by hand run\n"
    "    pip download --no-deps recbole==1.2.1 -d DIR\n"
    "and pass the wheel (or the folder recbole/dataset_example/ml-100k inside "
    "it) to load_movielens. GroupLens's own zips are at "
    "https://grouplens.org/datasets/movielens/ ; load_movielens reads them, "
    "zipped or unpacked."
)


class _Files:
    """The files of a data set, in a folder or in a zip (a wheel is a zip),
    looked up by base name wherever they sit."""

    def __init__(self, path):
        self.path = os.fspath(path)
        if os.path.isdir(self.path):
            self._zip = None
            names = [os.path.join(root, f) for root, _, files in os.walk(self.path) for f in files]
        elif zipfile.is_zipfile(self.path):
            self._zip = zipfile.ZipFile(self.path)
            names = self._zip.namelist()
        else:
            raise ValueError(f"{self.path!r} is neither a folder nor a zip file of MovieLens.")
        self._names = {}
        for name in sorted(names, key=len):  # the shallowest copy wins
            self._names.setdefault(os.path.basename(name), name)

    def find(self, *candidates):
        for base in candidates:
            if base in self._names:
                return base
        return None

    def suffix(self, ext):
        found = sorted(b for b in self._names if b.endswith(ext))
        return found[0] if found else None

    def text(self, base, encoding):
        """The file's text. Reads stop at ``MAX_FILE_BYTES``: a small zip
        can expand to gigabytes, and a zip's declared sizes can lie."""
        name = self._names[base]
        if self._zip is not None:
            with self._zip.open(name) as f:
                raw = f.read(MAX_FILE_BYTES + 1)
        else:
            with open(name, "rb") as f:
                raw = f.read(MAX_FILE_BYTES + 1)
        if len(raw) > MAX_FILE_BYTES:
            raise ValueError(
                f"{base} in {self.path!r} is larger than {MAX_FILE_BYTES >> 20} MiB once decompressed; "
                "MovieLens files up to ml-1m are far smaller, so it is not read."
            )
        return raw.decode(encoding)


def _table(text, sep, n_fields, name, int_columns=()):
    """The rows of a ``sep``-separated side file, each with at least
    ``n_fields`` fields, and ``int_columns`` parsed as ints; a short row or
    a bad number is named with the file and the line."""
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        row = line.split(sep)
        if len(row) < n_fields:
            raise ValueError(
                f"{name} has {len(row)} fields on line {number} where {n_fields} are expected: {line!r}."
            )
        for c in int_columns:
            try:
                row[c] = int(row[c])
            except ValueError:
                raise ValueError(
                    f"{name} holds {row[c]!r} in field {c + 1} of line {number}, where an integer is "
                    f"expected: {line!r}."
                ) from None
        rows.append(row)
    return rows


def _numbers(text, n_columns, dtype=np.float64, name="A ratings file"):
    """The whitespace-separated numbers of ``text``, ``n_columns`` a line.
    Lines are counted, not only fields: a file with a column missing must
    not be read with its columns shifted."""
    lines = [line for line in text.splitlines() if line.strip()]
    fields = text.split()
    if len(fields) != len(lines) * n_columns:
        number, line = next((n, line) for n, line in enumerate(text.splitlines(), 1)
                            if line.strip() and len(line.split()) != n_columns)
        raise ValueError(
            f"{name} has {len(line.split())} fields on line {number} where {n_columns} are expected: "
            f"{line!r}."
        )
    return np.array(fields, dtype=dtype).reshape(-1, n_columns)


def _genre_matrix(per_item):
    names = list(GENRES) + sorted({g for gs in per_item for g in gs} - set(GENRES))
    column = {g: n for n, g in enumerate(names)}
    flags = np.zeros((len(per_item), len(names)), dtype=np.int8)
    for row, gs in enumerate(per_item):
        flags[row, [column[g] for g in gs]] = 1
    return flags, names


def _year(text):
    digits = "".join(c for c in text[-4:] if c.isdigit())
    return float(digits) if len(digits) == 4 else np.nan


def _read_100k(files):
    r = _numbers(files.text("u.data", "latin-1"), 4, np.int64, "u.data")
    users = items = None
    if files.find("u.user"):
        rows = _table(files.text("u.user", "latin-1"), "|", 5, "u.user", (0, 1))
        users = {"user_id": [x[0] for x in rows], "age": [x[1] for x in rows],
                 "gender": [x[2] for x in rows], "occupation": [x[3] for x in rows],
                 "zip_code": [x[4] for x in rows]}
    if files.find("u.item"):
        names = list(GENRES)
        if files.find("u.genre"):
            pairs = _table(files.text("u.genre", "latin-1"), "|", 2, "u.genre", (1,))
            names = [name for name, _ in sorted(pairs, key=lambda p: p[1])]
        rows = _table(files.text("u.item", "latin-1"), "|", 5 + len(names), "u.item", (0,))
        items = {"item_id": [x[0] for x in rows], "title": [x[1] for x in rows],
                 "year": [_year(x[2]) for x in rows],
                 "genres": [[g for g, flag in zip(names, x[5:]) if flag.strip() == "1"] for x in rows]}
    return r[:, 0], r[:, 1], r[:, 2].astype(np.float64), r[:, 3], users, items


def _read_1m(files):
    r = _numbers(files.text("ratings.dat", "latin-1").replace("::", " "), 4, np.int64, "ratings.dat")
    users = items = None
    if files.find("users.dat"):
        rows = _table(files.text("users.dat", "latin-1"), "::", 5, "users.dat", (0, 2))
        # ml-1m codes age as a bracket's lower bound and occupation as 0..20.
        users = {"user_id": [x[0] for x in rows], "age": [x[2] for x in rows],
                 "gender": [x[1] for x in rows], "occupation": [x[3] for x in rows],
                 "zip_code": [x[4] for x in rows]}
    if files.find("movies.dat"):
        rows = _table(files.text("movies.dat", "latin-1"), "::", 3, "movies.dat", (0,))
        items = {"item_id": [x[0] for x in rows], "title": [x[1] for x in rows],
                 "year": [_year(x[1].rstrip().rstrip(")")) for x in rows],
                 "genres": [[g for g in x[2].split("|") if g] for x in rows]}
    return r[:, 0], r[:, 1], r[:, 2].astype(np.float64), r[:, 3], users, items


def _atomic_table(text):
    """A recbole atomic file: a tab-separated header of ``name:type`` fields."""
    lines = [line for line in text.splitlines() if line]
    header = [field.split(":")[0] for field in lines[0].split("\t")]
    rows = [line.split("\t") for line in lines[1:]]
    return {name: [row[n] if n < len(row) else "" for row in rows] for n, name in enumerate(header)}


def _read_atomic(files):
    inter = files.suffix(".inter")
    text = files.text(inter, "utf-8")
    header, _, body = text.partition("\n")
    fields = [field.split(":")[0] for field in header.strip().split("\t")]
    missing = {"user_id", "item_id", "rating"} - set(fields)
    if missing:
        raise ValueError(f"{inter} lacks the fields {sorted(missing)}.")
    r = _numbers(body, len(fields), name=inter)
    col = {name: n for n, name in enumerate(fields)}
    timestamp = r[:, col["timestamp"]].astype(np.int64) if "timestamp" in col else np.zeros(len(r), np.int64)
    users = items = None
    if files.suffix(".user"):
        t = _atomic_table(files.text(files.suffix(".user"), "utf-8"))
        users = {"user_id": [int(v) for v in t["user_id"]],
                 "age": [int(v) if v else -1 for v in t.get("age", [""] * len(t["user_id"]))],
                 "gender": t.get("gender"), "occupation": t.get("occupation"), "zip_code": t.get("zip_code")}
    if files.suffix(".item"):
        t = _atomic_table(files.text(files.suffix(".item"), "utf-8"))
        n = len(t["item_id"])
        items = {"item_id": [int(v) for v in t["item_id"]], "title": t.get("movie_title", [""] * n),
                 "year": [float(v) if v.strip().isdigit() else np.nan for v in t.get("release_year", [""] * n)],
                 "genres": [v.split() for v in t.get("class", [""] * n)]}
    user_ids = _integer_ids(r[:, col["user_id"]], inter, "user_id")
    item_ids = _integer_ids(r[:, col["item_id"]], inter, "item_id")
    return user_ids, item_ids, r[:, col["rating"]], timestamp, users, items


def _integer_ids(values, name, field):
    """``values`` as int64 ids, refusing any that is not a whole number
    (1.7 must not become 1)."""
    ids = values.astype(np.int64)
    if not np.array_equal(ids, values):
        bad = float(values[ids != values][0])
        raise ValueError(f"{name}: the {field} field holds {bad:g}, not a whole number; ids must be integers.")
    return ids


def load_movielens(path, *, as_frame=False):
    """Load MovieLens ratings and side features from local files.

    Reads GroupLens's formats, from a folder or straight from the zip:
    ml-100k (``u.data``, ``u.user``, ``u.item``), ml-1m (``ratings.dat``,
    ``users.dat``, ``movies.dat``, latin-1), and the recbole atomic files
    (``ml-100k.inter``, ``.user``, ``.item``) that the recbole wheel on PyPI
    ships, which can be passed as the wheel file itself.

    Parameters
    ----------
    path : str or path-like
        A folder holding the files (at any depth), or a zip or wheel file.
    as_frame : bool, default=False
        Return pandas objects (needs pandas).

    Raises
    ------
    ValueError
        If a file has a short row or a malformed number (the message gives
        the file and the line), or is larger than ``MAX_FILE_BYTES``
        (256 MiB) once decompressed.

    Returns
    -------
    data : Bunch
        X : ndarray of shape (n_ratings, 2), int64, or DataFrame
            (user id, item id) rows, ids as in the files.
        y : ndarray of shape (n_ratings,) or Series
            Ratings.
        timestamp : ndarray of shape (n_ratings,), int64, or Series
            Unix time of each rating (0 where the files have none).
        user_features : Bunch of arrays, DataFrame indexed by user id, or None
            ``user_id``, ``age``, ``gender``, ``occupation``, ``zip_code``.
            (ml-1m codes age by bracket and occupation by number.)
        item_features : Bunch of arrays, DataFrame indexed by item id, or None
            ``item_id``, ``title``, ``year`` (NaN if unknown), and ``genres``,
            an (n_items, n_genres) 0/1 array (in a DataFrame, one column per
            genre).
        genre_names : list of str
        frame : DataFrame or None
            (user_id, item_id, rating, timestamp), with ``as_frame``.
        variant : str
            ``"100k"``, ``"1m"`` or ``"atomic"``.
        DESCR : str

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from sklearn_metarec.datasets import load_movielens
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "u.data").write_text("1\\t10\\t4\\t881250949\\n2\\t10\\t3\\t891717742\\n")
    >>> data = load_movielens(folder)
    >>> data.X.tolist(), data.y.tolist(), data.variant
    ([[1, 10], [2, 10]], [4.0, 3.0], '100k')
    """
    files = _Files(path)
    if files.find("u.data"):
        variant, reader = "100k", _read_100k
    elif files.find("ratings.dat"):
        variant, reader = "1m", _read_1m
    elif files.suffix(".inter"):
        variant, reader = "atomic", _read_atomic
    else:
        raise ValueError(
            f"No MovieLens ratings file (u.data, ratings.dat or *.inter) in {files.path!r}."
        )
    users, items, ratings, timestamp, user_table, item_table = reader(files)
    X = np.column_stack([users, items]).astype(np.int64)
    genre_names = list(GENRES)
    if item_table is not None:
        flags, genre_names = _genre_matrix(item_table.pop("genres"))
        item_table = {k: np.asarray(v) for k, v in item_table.items()}
        item_table["genres"] = flags
    if user_table is not None:
        user_table = {k: np.asarray(v) for k, v in user_table.items() if v is not None}
    frame = None
    if as_frame:
        pd = _pandas()
        frame = pd.DataFrame({"user_id": X[:, 0], "item_id": X[:, 1], "rating": ratings,
                              "timestamp": timestamp})
        X, ratings, timestamp = frame[["user_id", "item_id"]], frame["rating"], frame["timestamp"]
        if user_table is not None:
            user_table = pd.DataFrame(user_table).set_index("user_id")
        if item_table is not None:
            genres = item_table.pop("genres")
            item_table = pd.DataFrame(item_table).set_index("item_id")
            item_table[genre_names] = genres
    else:
        user_table = None if user_table is None else Bunch(**user_table)
        item_table = None if item_table is None else Bunch(**item_table)
    return Bunch(
        X=X, y=ratings, timestamp=timestamp, user_features=user_table, item_features=item_table,
        genre_names=genre_names, frame=frame, variant=variant,
        DESCR=(f"MovieLens ratings ({variant} format) read from {files.path}: "
               f"{len(ratings)} ratings. F. M. Harper and J. A. Konstan, The MovieLens "
               "Datasets: History and Context, ACM TiiS 5(4), 2015. Terms of use: "
               "https://grouplens.org/datasets/movielens/"),
    )


def _pandas():
    try:
        import pandas as pd
    except ImportError as exc:  # pragma: no cover - pandas is in the test extra
        raise ImportError("as_frame=True needs pandas: pip install pandas") from exc
    return pd


def _digest(path, algorithm):
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _verified(path, algorithm, expected, cached=False):
    got = _digest(path, algorithm)
    if got != expected:
        os.remove(path)
        why = ("the cached copy was damaged or replaced since it was downloaded" if cached
               else "the download is corrupt or was changed upstream")
        raise OSError(
            f"{path} has {algorithm} {got}, not the published {expected}; {why}, and it has been removed."
        )
    return path


def _download(url, target):
    partial = target + ".part"
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as out:
            shutil.copyfileobj(response, out)
    except (urllib.error.URLError, OSError) as exc:
        if os.path.exists(partial):
            os.remove(partial)
        raise OSError(f"Could not download {url}: {exc}.\n{_OFFLINE_HELP}") from exc
    os.replace(partial, target)


def _pip_download(requirement, folder):
    command = [sys.executable, "-m", "pip", "download", "--no-deps", requirement, "-d", folder]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise OSError(
            f"`{' '.join(command[2:])}` failed: {result.stderr.strip()[-500:]}\n{_OFFLINE_HELP}"
        )


def fetch_movielens(variant="100k", *, data_home=None, source="grouplens",
                    download_if_missing=True, as_frame=False):
    """Load MovieLens, downloading it into a cache the first time.

    Parameters
    ----------
    variant : {"100k", "1m"}, default="100k"
        Which data set.
    data_home : str or path-like, default=None
        Cache folder; by default scikit-learn's data home
        (``~/scikit_learn_data`` or ``$SCIKIT_LEARN_DATA``), under
        ``movielens/``.
    source : {"grouplens", "pypi"}, default="grouplens"
        Where to get the files if they are not cached: GroupLens's zip
        (checked against its published MD5), or, for ``"100k"`` only, the
        recbole wheel from the package index through ``pip download``
        (checked against its SHA-256): the route that works on machines that
        reach only a package index.
    download_if_missing : bool, default=True
        If False, raise ``OSError`` when the data is not cached.
    as_frame : bool, default=False
        Return pandas objects.

    Returns
    -------
    data : Bunch
        As :func:`load_movielens` returns.

    Notes
    -----
    With no network at all, copy GroupLens's zip, or the recbole wheel from
    ``pip download --no-deps recbole==1.2.1``, to any folder and pass it to
    :func:`load_movielens`, or put it in ``data_home/movielens/``.
    """
    if variant not in _ARCHIVES:
        raise ValueError(f"variant must be one of {sorted(_ARCHIVES)}; got {variant!r}.")
    if source not in ("grouplens", "pypi"):
        raise ValueError(f"source must be 'grouplens' or 'pypi'; got {source!r}.")
    if source == "pypi" and variant != "100k":
        raise ValueError("Only MovieLens-100k ships on PyPI (in the recbole wheel).")
    folder = os.path.join(get_data_home(data_home), "movielens")
    url, algorithm, checksum = _ARCHIVES[variant]
    archive = os.path.join(folder, os.path.basename(url))
    wheel = os.path.join(folder, _WHEEL[1])
    # A cached file is checked again on every load: a file damaged or
    # replaced since its download is removed (and fetched again below).
    expected = {archive: (algorithm, checksum)}
    if variant == "100k":
        expected[wheel] = _WHEEL[2:]
    for path, (algo, digest) in expected.items():
        if os.path.exists(path):
            try:
                return load_movielens(_verified(path, algo, digest, cached=True), as_frame=as_frame)
            except OSError as exc:
                if not download_if_missing:
                    raise
                warnings.warn(f"{exc} Fetching it again.", stacklevel=2)
    if not download_if_missing:
        raise OSError(f"MovieLens-{variant} is not in {folder}.\n{_OFFLINE_HELP}")
    os.makedirs(folder, exist_ok=True)
    if source == "grouplens":
        _download(url, archive)
        return load_movielens(_verified(archive, algorithm, checksum), as_frame=as_frame)
    requirement, name, algorithm, checksum = _WHEEL
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        _pip_download(requirement, tmp)
        if not os.path.exists(os.path.join(tmp, name)):
            raise OSError(f"pip did not produce {name}.\n{_OFFLINE_HELP}")
        _verified(os.path.join(tmp, name), algorithm, checksum)
        os.replace(os.path.join(tmp, name), wheel)
    return load_movielens(wheel, as_frame=as_frame)
