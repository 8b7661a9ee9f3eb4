"""The bounds-checked child process of ``test_boundscheck`` compiles every
kernel anew (about a minute and a half on 2 cores, mostly LLVM on one
thread): it starts as soon as the tests are collected and runs alongside
them, and its test collects the outcome."""

import tempfile


def pytest_collection_finish(session):
    if any(getattr(item, "module", None) is not None and item.module.__name__.endswith("test_boundscheck")
           for item in session.items):
        from . import test_boundscheck

        folder = tempfile.TemporaryDirectory(prefix="boundscheck-")
        session.config.stash[test_boundscheck.CHILD] = (folder, test_boundscheck.start(folder.name))


def pytest_unconfigure(config):
    from . import test_boundscheck

    folder, child = config.stash.get(test_boundscheck.CHILD, (None, None))
    if child is not None:
        if child.poll() is None:
            child.kill()
        child.wait()
        folder.cleanup()
