"""Worker processes that die with their parent.

A ``dataset build`` killed with ``kill -9`` cannot shut its process pool down, and forked workers
used to live on for 13+ minutes (~237 MB each) finishing work nobody would collect. Each worker
therefore asks the Linux kernel to SIGKILL it when its parent dies (``prctl(PR_SET_PDEATHSIG)``),
and a watchdog thread polls the parent pid as a fallback where prctl is missing (macOS) or the
parent died before the request was made.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1
WATCHDOG_INTERVAL_S = 0.5


def request_death_signal() -> bool:
    """Ask the kernel to SIGKILL this process when its parent exits; False where that is not available."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch(parent_pid: int, interval: float) -> None:
    while True:
        if os.getppid() != parent_pid:  # reparented: the parent is gone
            os._exit(1)
        time.sleep(interval)


def start_watchdog(parent_pid: int, interval: float = WATCHDOG_INTERVAL_S) -> threading.Thread:
    """A daemon thread that ends this process (``os._exit``) once ``parent_pid`` is no longer its parent."""
    thread = threading.Thread(target=_watch, args=(parent_pid, interval), name="parent-watchdog", daemon=True)
    thread.start()
    return thread


def die_with_parent(parent_pid: int, use_prctl: bool = True) -> None:
    """Process-pool initializer: bind this worker's life to ``parent_pid`` (pass ``os.getpid()`` from the parent).

    The death signal is requested first, then the parent is checked once (it may have died in
    between, in which case no signal will ever come), then the watchdog starts as the fallback.
    """
    if use_prctl:
        request_death_signal()
    if os.getppid() != parent_pid:
        os._exit(1)
    start_watchdog(parent_pid)
