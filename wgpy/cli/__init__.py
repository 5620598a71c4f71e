"""Console entry points: `wgpy` and `wgpy-quick`."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable

Run = Callable[[list[str]], int]

# wgpy-quick's own protocol with `wgpy IFNAME` (wgpy.quick.device.Standby): with this set to 1,
# it loads what it needs, then waits for `start` on its standard input before it creates
# anything, and ends at the end of input. Here, so that wgpy-quick need not load the daemon.
STANDBY_VARIABLE = "WGPY_STANDBY"


def argparse_exit_returned(run: Run) -> Run:
    """`run`, returning the status argparse exits with (0 after --help, 2 after a usage error)
    instead of raising SystemExit: a command's `run` always answers with its exit status. Its
    argument parsing must be the only place `run` raises SystemExit."""

    @functools.wraps(run)
    def returning(argv: list[str]) -> int:
        try:
            return run(argv)
        except SystemExit as exit_:
            return exit_.code if isinstance(exit_.code, int) else 2

    return returning


def failed(prog: str, error: Exception) -> int:
    """Print why `prog` cannot go on, in one line (an OSError by its file), and return 1."""
    detail = str(error)
    if isinstance(error, OSError) and error.strerror:
        detail = error.strerror if error.filename is None else f"{error.filename}: {error.strerror}"
    print(f"{prog}: {detail}", file=sys.stderr)
    return 1
