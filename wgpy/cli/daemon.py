"""`wgpy [-f|--foreground] IFNAME`: run an interface, with wireguard-go's command-line contract.

Without -f the command returns once the TUN device and the configuration socket exist and a
background process serves them (exit 0), or with a one-line reason why not (exit 1); this is what
wg-quick relies on when it runs a userspace implementation. LOG_LEVEL is read as wireguard-go
reads it: verbose or debug, error (the default), silent. WGPY_UNDER_LOAD_THRESHOLD (a positive
integer, default 128) is how many handshake messages within a second put the device under load,
when it answers an initiation without a valid mac2 with a cookie reply; 1 puts it under load from
the first message on (tests use this to exercise cookies). WGPY_PEER_HOOK=COMMAND admits peers
on their first handshake (see wgpy/io/peer_hook.py), at most WGPY_PEER_HOOK_LIMIT (default 4)
hooks at once, each given WGPY_PEER_HOOK_TIMEOUT seconds (default 2). WGPY_OFFLOADS=0 keeps to
one packet per system call each way (no TSO, GSO or GRO: the benchmarks' baseline),
WGPY_PURE=1 to the pure-Python data path (wgpy/io/accel.py), and WGPY_WRITERS=tun, udp,
tun,udp or none names the destinations the data path writes to from threads of their own (by
default the TUN, where four CPUs may run the daemon: see wgpy/io/datapath.py).
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
from collections.abc import Callable, Mapping, Set
from typing import TYPE_CHECKING, NamedTuple, TextIO

from wgpy.cli import STANDBY_VARIABLE
from wgpy.core.constants import UNDER_LOAD_THRESHOLD
from wgpy.io.tun import DEFAULT_FLAGS, IFF_VNET_HDR, IFNAMSIZ, describe, open_tun, valid_name

if TYPE_CHECKING:
    from wgpy.io.peer_hook import HookSettings

USAGE = "Usage: wgpy [-f/--foreground] INTERFACE-NAME"
Reporter = Callable[[str | None], None]
LOG_LEVELS = {"verbose": logging.DEBUG, "debug": logging.DEBUG, "error": logging.ERROR}
THRESHOLD_VARIABLE = "WGPY_UNDER_LOAD_THRESHOLD"
OFFLOADS_VARIABLE = "WGPY_OFFLOADS"
# Held back while the interface starts, until Interface.run() handles them (its STOP_SIGNALS).
HELD_WHILE_STARTING = (signal.SIGTERM, signal.SIGINT)


def run(argv: list[str]) -> int:
    foreground = bool(argv) and argv[0] in ("-f", "--foreground")
    names = argv[1:] if foreground else argv
    if len(names) != 1:
        print(USAGE, file=sys.stderr)
        return 1
    name = names[0]
    if not valid_name(name):
        print(f"wgpy: invalid interface name {name!r}{_why_invalid(name)}", file=sys.stderr)
        return 1
    # Imported only now: it loads the core, which the other commands of `wgpy` need not.
    from wgpy.io.busy_poll import window_wanted
    from wgpy.io.peer_hook import hook_settings
    from wgpy.io.writers import writers_wanted

    try:
        options = Options(
            under_load_threshold(os.environ), hook_settings(os.environ),
            writers_wanted(os.environ), window_wanted(os.environ),
        )  # fmt: skip
    except ValueError as error:
        print(f"wgpy: {error}", file=sys.stderr)
        return 1
    # Popped, so that no program the daemon runs inherits it.
    if os.environ.pop(STANDBY_VARIABLE, None) == "1" and not _told_to_start():
        return 0
    level = os.environ.get("LOG_LEVEL", "error")
    if foreground:
        configure_logging(level, sys.stderr)
        return _serve(name, options, report=_report_to_stderr)
    return _daemonize(name, options, level)


class Options(NamedTuple):
    """What the environment configures."""

    under_load_threshold: int
    peer_hook: HookSettings | None
    writers: Set[str]
    busy_poll: float  # seconds, 0 for none


def _why_invalid(name: str) -> str:
    size = len(name.encode())
    return (
        f": {size} bytes long, an interface name at most {IFNAMSIZ - 1}" if size >= IFNAMSIZ else ""
    )


def _told_to_start() -> bool:
    """Load the interface's modules, then wait for wgpy-quick's word."""
    import wgpy.io.interface  # noqa: F401 - _start's import, done ahead

    return sys.stdin.buffer.readline() == b"start\n"


def under_load_threshold(environ: Mapping[str, str]) -> int:
    """WGPY_UNDER_LOAD_THRESHOLD, or the default; raises ValueError unless a positive integer."""
    value = environ.get(THRESHOLD_VARIABLE)
    if value is None:
        return UNDER_LOAD_THRESHOLD
    if not value.isascii() or not value.isdigit() or int(value) < 1:
        raise ValueError(f"{THRESHOLD_VARIABLE}={value!r}: not a positive integer")
    return int(value)


def configure_logging(level: str, stream: TextIO) -> None:
    logger = logging.getLogger("wgpy")
    logger.handlers.clear()
    if level == "silent":
        logger.disabled = True
        return
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(asctime)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(LOG_LEVELS.get(level, logging.ERROR))


def _report_to_stderr(message: str | None) -> None:
    if message:
        print(message, file=sys.stderr)


def _serve(name: str, options: Options, report: Reporter) -> int:
    """Start the interface and serve. A SIGTERM or SIGINT while it starts waits, blocked, for
    Interface.run() to handle it: its default action would end the process with the TUN and the
    configuration socket (which tells wg the interface is up) left behind."""
    signal.pthread_sigmask(signal.SIG_BLOCK, HELD_WHILE_STARTING)
    try:
        return _start(name, options, report)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, HELD_WHILE_STARTING)


def _start(name: str, options: Options, report: Reporter) -> int:
    # Imported only now, with the signals blocked: a thread started by what loads (numpy starts
    # some) that left them unblocked would take them with their default action.
    from wgpy.io.interface import Interface

    offloads = os.environ.get(OFFLOADS_VARIABLE) != "0"
    try:
        # With the virtio-net header from the start, offloads need no second attach.
        tun = open_tun(name, DEFAULT_FLAGS | (IFF_VNET_HDR if offloads else 0))
    except OSError as error:
        report(f"wgpy: failed to create TUN device {name}: {describe(error)}")
        return 1
    try:
        interface = Interface(
            tun,
            offloads=offloads,
            under_load_threshold=options.under_load_threshold,
            peer_hook=options.peer_hook,
            writers=options.writers,
            busy_poll=options.busy_poll,
        )
    except OSError as error:
        tun.close()
        report(f"wgpy: failed to start {name}: {error.strerror or error}")
        return 1
    logging.getLogger("wgpy").info("(%s) device started", name)
    report(None)
    # What is alive now (modules, classes, the interface) lives as long as the process: out of
    # the cyclic collector's sight, each full collection walks ~29,000 objects (~10 ms) fewer.
    # With 10,000 peers a full collection is ~40 ms of the interpreter held from the data path.
    gc.freeze()
    try:
        interface.run()
    finally:
        interface.close()
    return 0


def _daemonize(name: str, options: Options, level: str) -> int:
    """Fork; the child serves and tells the parent through a pipe whether it came up."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid:
        os.close(write_end)
        with os.fdopen(read_end, "rb") as pipe:
            message = pipe.read().decode(errors="replace")
        if message == "ok":
            return 0
        os.waitpid(pid, 0)
        print(message or f"wgpy: {name} failed to start", file=sys.stderr)
        return 1
    os.close(read_end)
    os.setsid()
    _detach_stdio(keep_output="LOG_LEVEL" in os.environ and level != "silent")
    configure_logging(level, sys.stderr)

    def report(message: str | None) -> None:
        os.write(write_end, (message or "ok").encode())
        os.close(write_end)

    status = 1
    try:
        status = _serve(name, options, report)
    except BaseException:
        # os._exit skips the interpreter's report of an uncaught exception: make it here.
        logging.getLogger("wgpy").exception("(%s) stopped by an error", name)
    finally:
        os._exit(status)


def _detach_stdio(keep_output: bool) -> None:
    """Standard input always from /dev/null; output too unless LOG_LEVEL asks for logs (as
    wireguard-go passes its stdout and stderr on only when LOG_LEVEL is set)."""
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    if not keep_output:
        os.dup2(null, 1)
        os.dup2(null, 2)
    os.close(null)
