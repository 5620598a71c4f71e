"""The caller's side of `wgpy run` and of the kernel-stack proxy: the UDP sockets opened here (so
the endpoint stays reachable whatever routes the namespace has), the child that makes the
namespace (wgpy.run.inside), a broker that opens more UDP sockets here for it, and the socket
broker through which this side makes sockets inside (for -p and the proxy).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
from dataclasses import dataclass
from typing import Any, Final

from wgpy.client import socket_path
from wgpy.config import Config
from wgpy.errors import WgpyError
from wgpy.io import socket_broker, userns
from wgpy.io.interface import open_udp_nonblocking
from wgpy.io.uapi_server import is_live
from wgpy.run import inside
from wgpy.uapi import DeviceUpdate

log = logging.getLogger("wgpy")

SI_KERNEL: Final = 0x80  # siginfo's si_code for a signal the kernel sent (a terminal's ^C)
# Passed on to COMMAND when sent to wgpy (kill); the terminal sends its own to the whole group.
FORWARDED: Final = frozenset(
    {signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2}
)


class RunError(WgpyError):
    """Why the namespace could not be made, in one line; `status` is the one to exit with (127
    for a COMMAND not found, as a shell's)."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


@dataclass(slots=True)
class Session:
    pid: int  # the child's, in the namespace
    command_pid: int  # COMMAND's, 0 without one
    broker: socket_broker.Broker  # makes sockets inside

    def close(self) -> int:
        """End the namespace (closing the broker tells the child to stop) and wait for it."""
        self.broker.close()
        return self.wait()

    def wait(self, flags: int = 0) -> int:
        """The child's exit status, a shell's way (128+N for signal N); -1 if WNOHANG and alive."""
        pid, status = os.waitpid(self.pid, flags)
        return -1 if pid == 0 else inside.exit_status(os.waitstatus_to_exitcode(status))


def start(
    config: Config,
    update: DeviceUpdate,
    name: str,
    command: list[str] | None,
    configuration_socket: bool = True,
) -> Session:
    """The namespace up with `config` (and COMMAND running in it, if given), or RunError."""
    reason = userns.unavailable_reason()
    if reason is not None:
        raise RunError(reason)
    # Before the port, which a running namesake would hold too: the name is the clearer reason.
    if configuration_socket and is_live(socket_path(name)):
        raise RunError(f"{socket_path(name)} is served by another process")
    try:
        sockets = open_udp_nonblocking(config.interface.listen_port or 0, 0)
    except OSError as error:
        raise RunError(f"cannot open the UDP port: {error.strerror}") from None
    outside_client, outside_server = socket_broker.channel()
    inside_client, inside_server = socket_broker.channel()
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        for sock in (outside_server, inside_client):
            sock.close()
        os.close(ready_r)
        plan = inside.Plan(
            name, config, update, sockets, outside_client, inside_server, command,
            configuration_socket,
        )  # fmt: skip
        _child(plan, ready_w)
    for sock in (*sockets, outside_client, inside_server):
        sock.close()
    os.close(ready_w)
    socket_broker.serve(outside_server, _open_udp)
    with os.fdopen(ready_r, "rb") as pipe:
        message = pipe.read().decode(errors="replace").strip()
    session = Session(pid, 0, socket_broker.Broker(inside_client))
    if not message.startswith("ready "):
        status = session.close()
        raise RunError(message or "the namespace's process ended before it was ready", status or 1)
    session.command_pid = int(message.split()[1])
    return session


def wait_forwarding_signals(session: Session) -> int:
    """Pass FORWARDED signals sent to this process on to COMMAND until the child ends; its
    status. The caller blocks FORWARDED and SIGCHLD (in every thread) before `start`."""
    while (status := session.wait(os.WNOHANG)) < 0:
        info = signal.sigwaitinfo({*FORWARDED, signal.SIGCHLD})
        if info.si_signo != signal.SIGCHLD and info.si_code != SI_KERNEL:
            with contextlib.suppress(ProcessLookupError):
                os.kill(session.command_pid, info.si_signo)
    return status


def _child(plan: inside.Plan, ready: int) -> None:
    status = 1
    try:
        # What the caller set for its own loop (asyncio's wake-up pipe) is not the child's.
        signal.set_wakeup_fd(-1)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        status = inside.main(plan, ready)
    except BaseException:
        log.exception("wgpy run: the namespace's process failed")
    finally:
        os._exit(status)


def _open_udp(request: dict[str, Any]) -> list[socket.socket]:
    port, fwmark = request["udp"]
    return open_udp_nonblocking(int(port), int(fwmark))
