"""Connecting to a proxy client's destination through the Network, with a deadline, and what a
failure is called in each protocol's replies."""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable

from wgpy.proxy.network import Network
from wgpy.proxy.socks5 import Reply

log = logging.getLogger("wgpy.proxy")
CONNECT_TIMEOUT = 30.0  # seconds for a name to resolve and a connection to stand

_SOCKS5_REPLIES = {
    errno.ECONNREFUSED: Reply.CONNECTION_REFUSED,
    errno.ENETUNREACH: Reply.NETWORK_UNREACHABLE,
    errno.EHOSTUNREACH: Reply.HOST_UNREACHABLE,
    errno.ETIMEDOUT: Reply.TTL_EXPIRED,
}


async def connect(
    network: Network, host: str, port: int, timeout: float
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection to host:port through `network`; raises OSError (TimeoutError past the
    deadline) or ValueError for a name that cannot be resolved."""
    async with asyncio.timeout(timeout):
        return await network.open_connection(host, port)


async def connect_protocol(
    network: Network,
    protocol_factory: Callable[[], asyncio.Protocol],
    host: str,
    port: int,
    timeout: float,
) -> None:
    """`connect`'s connection for a protocol of the caller's, whose connection_made hears of
    it; raises as `connect` does."""
    async with asyncio.timeout(timeout):
        await network.create_connection(protocol_factory, host, port)


def socks5_reply(error: Exception) -> Reply:
    if isinstance(error, TimeoutError):
        return Reply.TTL_EXPIRED
    if isinstance(error, (socket.gaierror, ValueError)):
        return Reply.HOST_UNREACHABLE
    if isinstance(error, OSError) and error.errno in _SOCKS5_REPLIES:
        return _SOCKS5_REPLIES[error.errno]
    return Reply.GENERAL_FAILURE


def http_status(error: Exception) -> int:
    """504 for a deadline passed, 502 for every other failure to reach the origin."""
    return 504 if isinstance(error, TimeoutError) else 502


def describe_error(error: Exception) -> str:
    return str(error) or type(error).__name__
