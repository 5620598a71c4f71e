"""`wgpy metrics IFNAME [--listen ADDR:PORT | --listen unix:PATH]`: Prometheus metrics over HTTP.

Each GET /metrics asks the interface's configuration socket for `get` and `stats=1` and answers
with wgpy.metrics' text; while the interface is down it answers 503 with the reason. The
endpoint has no authentication, and a peer's endpoint and traffic are worth keeping private, so
it listens only on a loopback address or a unix socket (mode 0660, the file system's
permissions being the access control). Works against wireguard-go too, without wgpy's counters.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import logging
import os
import signal
import socket
import socketserver
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any, Final

from wgpy import metrics
from wgpy.cli import argparse_exit_returned
from wgpy.client import get_device, get_stats, socket_path
from wgpy.errors import UapiError
from wgpy.io.tun import valid_name

PROG: Final = "wgpy metrics"
# The port registered for the WireGuard exporters (both community exporters default to it).
DEFAULT_LISTEN: Final = "127.0.0.1:9586"
UNIX_PREFIX: Final = "unix:"
SOCKET_MODE: Final = 0o660
NO_AUTHENTICATION: Final = (
    "the metrics endpoint has no authentication, so it listens only on a loopback address "
    "(127.0.0.0/8, ::1) or a unix socket (unix:PATH)"
)

log = logging.getLogger("wgpy.metrics")
Scrape = Callable[[], tuple[HTTPStatus, str]]


@dataclass(frozen=True, slots=True)
class Listen:
    """Where to serve: a loopback (host, port), or a unix socket's path."""

    host: str = ""
    port: int = 0
    path: Path | None = None

    def __str__(self) -> str:
        if self.path is not None:
            return f"{UNIX_PREFIX}{self.path}"
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_listen(text: str) -> Listen:
    """`ADDR:PORT`, `[ADDR]:PORT` or `unix:PATH`; raises ValueError for anything else, and for
    an address that is not loopback."""
    if text.startswith(UNIX_PREFIX):
        path = text[len(UNIX_PREFIX) :]
        if not path:
            raise ValueError("unix: needs a path")
        return Listen(path=Path(path))
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{text!r} is not ADDR:PORT, [IPv6]:PORT or unix:PATH")
    bracketed = host.startswith("[") and host.endswith("]")
    try:
        address = ipaddress.ip_address(host[1:-1] if bracketed else host)
    except ValueError:
        raise ValueError(f"{host!r} is not an IP address") from None
    if address.version == 6 and not bracketed:
        raise ValueError(f"an IPv6 address goes in brackets: [{address}]:{port}")
    if not address.is_loopback:
        raise ValueError(f"refusing to listen on {text}: {NO_AUTHENTICATION}")
    return Listen(host=str(address), port=int(port))


# Scraping -----------------------------------------------------------------------------------------


def scrape(ifname: str) -> tuple[HTTPStatus, str]:
    """The interface's metrics, or 503 and why not."""
    try:
        state = get_device(ifname)
        stats = get_stats(ifname)
    except (OSError, UapiError) as error:
        return HTTPStatus.SERVICE_UNAVAILABLE, f"{ifname}: {_unavailable(ifname, error)}\n"
    return HTTPStatus.OK, metrics.render(ifname, state, stats)


def _unavailable(ifname: str, error: OSError | UapiError) -> str:
    path = socket_path(ifname)
    if isinstance(error, FileNotFoundError | ConnectionRefusedError):
        return f"the interface is not running ({path}: {error.strerror})"
    if isinstance(error, UapiError):
        return f"the daemon refused the request: {error}"
    reason = error.strerror or os.strerror(error.errno or errno.EIO)
    return f"cannot reach the daemon through {path}: {reason}"


class MetricsHandler(BaseHTTPRequestHandler):
    """GET /metrics scrapes; GET / points there; anything else is 404."""

    server_version = "wgpy-metrics"

    def __init__(self, *args: Any, scrape: Scrape, **kwargs: Any) -> None:
        self._scrape = scrape
        super().__init__(*args, **kwargs)  # Handles the request.

    def do_GET(self) -> None:
        path = self.path.partition("?")[0]
        if path == "/metrics":
            status, body = self._scrape()
            content_type = metrics.CONTENT_TYPE if status is HTTPStatus.OK else "text/plain"
            self._reply(status, body, content_type)
        elif path == "/":
            self._reply(HTTPStatus.OK, "wgpy metrics: see /metrics\n", "text/plain")
        else:
            self._reply(HTTPStatus.NOT_FOUND, "not found: try /metrics\n", "text/plain")

    def _reply(self, status: HTTPStatus, body: str, content_type: str) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def address_string(self) -> str:
        # A unix socket's client has no address (client_address is "").
        return str(self.client_address[0]) if self.client_address else "unix"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class _LoopbackServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, listen: Listen, handler: Callable[..., MetricsHandler]) -> None:
        self.address_family = socket.AF_INET6 if ":" in listen.host else socket.AF_INET
        super().__init__((listen.host, listen.port), handler)


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path: Path, handler: Callable[..., MetricsHandler]) -> None:
        _remove_stale_socket(path)
        self.path = path
        self._bound = False
        super().__init__(str(path), handler, bind_and_activate=False)
        try:
            self.server_bind()
            self._bound = True
            os.chmod(path, SOCKET_MODE)
            self.server_activate()
        except BaseException:
            self.server_close()
            raise

    def server_close(self) -> None:
        super().server_close()
        if self._bound:
            self.path.unlink(missing_ok=True)


def _remove_stale_socket(path: Path) -> None:
    """A socket file nobody listens on is left from an earlier run; anything else stays, and
    the bind fails on it."""
    try:
        if not stat.S_ISSOCK(path.stat().st_mode):
            return
    except FileNotFoundError:
        return
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except ConnectionRefusedError:
            path.unlink()
            return
    raise OSError(errno.EADDRINUSE, os.strerror(errno.EADDRINUSE), str(path))


def open_server(listen: Listen, scrape: Scrape) -> socketserver.BaseServer:
    """Bound and listening; `serve_forever()` serves it. Raises OSError if the bind fails."""

    def handler(*args: Any) -> MetricsHandler:
        return MetricsHandler(*args, scrape=scrape)

    if listen.path is not None:
        return _UnixServer(listen.path, handler)
    return _LoopbackServer(listen, handler)


# The command --------------------------------------------------------------------------------------


@argparse_exit_returned
def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Serve an interface's state and counters as Prometheus metrics "
        "(GET /metrics), read from its configuration socket on each scrape.",
    )
    parser.add_argument("interface", metavar="IFNAME")
    parser.add_argument(
        "--listen", default=DEFAULT_LISTEN, metavar="ADDR:PORT",
        help=f"a loopback address and port, or unix:PATH (default {DEFAULT_LISTEN})",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if not valid_name(args.interface):
        print(f"{PROG}: invalid interface name {args.interface!r}", file=sys.stderr)
        return 2
    try:
        listen = parse_listen(args.listen)
    except ValueError as error:
        print(f"{PROG}: --listen: {error}", file=sys.stderr)
        return 2
    try:
        server = open_server(listen, lambda: scrape(args.interface))
    except OSError as error:
        print(f"{PROG}: cannot listen on {listen}: {error.strerror or error}", file=sys.stderr)
        return 1
    print(f"{PROG}: serving {args.interface} on {_url(listen)}", file=sys.stderr, flush=True)
    return _serve(server)


def _url(listen: Listen) -> str:
    return f"{listen} /metrics" if listen.path is not None else f"http://{listen}/metrics"


class _Stop(Exception):
    pass


def _serve(server: socketserver.BaseServer) -> int:
    """Until SIGTERM or SIGINT."""

    def stop(signum: int, frame: FrameType | None) -> None:
        raise _Stop

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.serve_forever()
    except _Stop:
        pass
    finally:
        server.server_close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0


if __name__ == "__main__":
    raise SystemExit(run(sys.argv[1:]))
