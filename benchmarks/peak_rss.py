"""Peak resident memory of a call, measured from outside it (Linux)."""

import os
import threading
import time


def rss():
    """Resident memory of this process in bytes (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _high_water_mark():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmHWM in /proc/self/status")


def _reset_high_water_mark():
    # Linux >= 4.0: writing 5 to clear_refs resets VmHWM to the current RSS.
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def peak_memory(fn):
    """Peak resident memory that ``fn()`` adds, in MiB.

    The kernel's own high-water mark (VmHWM, reset first) where Linux allows
    it: exact, and free, so that timings taken around it stay true. A
    sampling thread would take a core from the threads it measures.
    Elsewhere, a thread samples every 0.2 ms (our kernels release the GIL,
    as PyTorch's operators do).
    """
    base = rss()
    try:
        _reset_high_water_mark()
        _high_water_mark()
    except OSError:
        return _sampled_peak(fn, base)
    fn()
    return (max(_high_water_mark(), rss()) - base) / 2**20


def _sampled_peak(fn, base):
    peak = [base]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(2e-4)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        fn()
    finally:
        done.set()
        sampler.join()
    return (max(peak[0], rss()) - base) / 2**20
