"""Peak resident memory of a call, measured from outside it (Linux)."""

import os
import threading
import time


def rss():
    """Resident memory of this process in bytes (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_memory(fn):
    """Peak resident memory that ``fn()`` adds, in MiB, sampled every 0.2 ms
    by a thread (our kernels release the GIL, as PyTorch's operators do)."""
    base = rss()
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
