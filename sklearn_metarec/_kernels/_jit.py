"""The decorator every kernel is compiled with, and where its cache lives.

Numba's on-disk cache checks only the source file of the function it
caches, so a kernel whose helper (in another module of this package)
changed would load stale machine code. The cache of all kernels therefore
sits in a folder named after a hash of every kernel module's source: any
edit to any of them moves the whole cache to a fresh folder.

With Numba's bounds checking on (``NUMBA_BOUNDSCHECK=1``) the parallel
kernels compile serially: Numba drops bounds checks inside ``prange``
bodies (numba/numba#9380), so a parallel kernel would check only the
helpers it calls. Such kernels give the same results (no result depends on
the thread count) and have a cache folder of their own.
"""

import hashlib
import sys
import tempfile
from pathlib import Path

import numba
from numba.core import config


CHECKED = bool(config.BOUNDSCHECK)


def _cache_dir():
    """``<base>/sklearn_metarec-kernels-<hash>[-boundscheck]``, with base the user's
    ``NUMBA_CACHE_DIR`` if set, else the package's ``__pycache__``; None if
    no such folder can be written."""
    here = Path(__file__).parent
    digest = hashlib.sha256()
    for path in sorted(here.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    base = Path(config.CACHE_DIR) if config.CACHE_DIR else here / "__pycache__"
    checked = "-boundscheck" if CHECKED else ""
    folder = base / f"sklearn_metarec-kernels-{digest.hexdigest()[:16]}{checked}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError:
        return None
    return str(folder)


_CACHE_DIR = _cache_dir()
_noticed = []


def first_use_notice(stream=None):
    """Once per process, say on ``stream`` (stderr) that the kernels are
    about to compile, when the on-disk cache holds none of them: the first
    call is otherwise silent for tens of seconds."""
    if _noticed:
        return
    _noticed.append(True)
    if _CACHE_DIR is not None and any(Path(_CACHE_DIR).rglob("*.nbi")):
        return
    where = "once; later runs load them from the cache" if _CACHE_DIR else "in every process (no writable cache)"
    print(f"sklearn_metarec: compiling the Numba kernels for first use, about a minute on 2 cores ({where}).",
          file=stream or sys.stderr, flush=True)


# Sums may be reordered (and multiply-adds fused), so that a dot product
# of k terms runs as vector lanes rather than one chain of k dependent adds.
# No assumption about NaN or infinity: divergence must still show.
REORDER_SUMS = ("reassoc", "contract")


def jit(parallel=False, fastmath=False):
    """``numba.njit(nogil=True)`` with the on-disk cache in ``_CACHE_DIR``,
    or without a cache if there is none: importing the package must never
    fail. ``fastmath``: Numba's option (``REORDER_SUMS`` for the model's
    dot products)."""

    def decorate(func):
        options = dict(parallel=parallel and not CHECKED, nogil=True, fastmath=set(fastmath) if fastmath else False)
        if _CACHE_DIR is None:
            return numba.njit(cache=False, **options)(func)
        # Numba's locators read CACHE_DIR when a function is decorated.
        previous = config.CACHE_DIR
        config.CACHE_DIR = _CACHE_DIR
        try:
            return numba.njit(cache=True, **options)(func)
        except RuntimeError:  # "cannot cache function ...: no locator available"
            return numba.njit(cache=False, **options)(func)
        finally:
            config.CACHE_DIR = previous

    return decorate
