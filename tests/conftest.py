"""Starts the slow child processes of the collected tests in the background
(see ``tests/_background.py``)."""

import tempfile
import time

import pytest

from ._background import RUNNER, Runner, prewarm_jobs, prewarm_report

FOLDER = pytest.StashKey()
MAIN_LANE = pytest.StashKey()  # (start, seconds until the first test that waits for a child)


def _waits(item):
    return hasattr(getattr(item, "module", None), "BACKGROUND")


def pytest_collection_modifyitems(session, config, items):
    # The tests that wait for the children run last, so that the rest of
    # the suite runs meanwhile; among them, those of the children queued
    # last come first, so that the main lane, once there, runs a child
    # the background lane has not reached (see ``Runner.claim``) instead
    # of waiting on the one it is running.
    order = {name: -n for n, name in enumerate(sorted({item.module.__name__ for item in items if _waits(item)}))}
    items.sort(key=lambda item: (_waits(item), order.get(getattr(getattr(item, "module", None), "__name__", None), 0)))


def pytest_collection_finish(session):
    modules = {}
    for item in session.items:
        module = getattr(item, "module", None)
        if module is not None and hasattr(module, "BACKGROUND"):
            modules[module.__name__] = module
    if modules:
        folder = tempfile.TemporaryDirectory(prefix="sklearn-metarec-tests-")
        jobs = prewarm_jobs()
        for name in sorted(modules):  # test_boundscheck before test_fuzz
            jobs.update(modules[name].BACKGROUND(folder.name))
        session.config.stash[RUNNER] = Runner(jobs, folder.name)
        session.config.stash[FOLDER] = folder
        session.config.stash[MAIN_LANE] = [time.perf_counter(), None]


def pytest_runtest_setup(item):
    lane = item.config.stash.get(MAIN_LANE, None)
    if lane is not None and lane[1] is None and _waits(item):
        lane[1] = time.perf_counter() - lane[0]


def pytest_terminal_summary(terminalreporter, config):
    # The children's times, so that a slow suite shows which lane held it.
    runner = config.stash.get(RUNNER, None)
    if runner is not None and runner.seconds:
        times = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in runner.seconds.items())
        lane = config.stash.get(MAIN_LANE, None)
        main = f"; the main lane reached the waiting tests at {lane[1]:.0f} s" if lane and lane[1] else ""
        terminalreporter.write_line(f"background children ({sum(runner.seconds.values()):.0f} s in all): {times}"
                                    + main)
    if runner is not None and "kernels" in runner.jobs and prewarm_report() is not None:
        loaded, used = prewarm_report()
        terminalreporter.write_line(f"prewarmed kernels: {loaded} of the {used} used here loaded from the cache")


def pytest_unconfigure(config):
    runner = config.stash.get(RUNNER, None)
    if runner is not None:
        runner.stop()
        runner.thread.join()
        config.stash[FOLDER].cleanup()
