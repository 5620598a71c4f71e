"""The name the kernel knows a thread by (/proc/PID/task/TID/comm, top -H, perf), set from within
it: Python 3.11's threading names a thread for Python alone. The benchmarks read each data path
thread's CPU time by this name (benchmarks/multicore.py)."""

from __future__ import annotations

import ctypes
from typing import Final

PR_SET_NAME: Final = 15
# The kernel's TASK_COMM_LEN, less the terminating NUL.
MAX_NAME: Final = 15

_libc = ctypes.CDLL(None, use_errno=True)


def name_this_thread(name: str) -> None:
    """Name the calling thread `name`, cut to MAX_NAME bytes; a refusal leaves the old name."""
    _libc.prctl(PR_SET_NAME, name.encode()[:MAX_NAME], 0, 0, 0)
