"""Fuzzing `wgpy proxy`'s SOCKS5 and HTTP listeners (issue 17) with garbage requests.

Each request is a valid SOCKS5 or HTTP proxy request (to the lab's echo service, a refusing port
or a name), then mutated a few times (bytes flipped, inserted, deleted or repeated), cut short,
padded far past any limit, or random bytes. The promises:
- in process, through the sans-IO protocols (wgpy.proxy.socks5, wgpy.proxy.http) fed in random
  pieces: nothing raises, and every rejection leaves a protocol error reply (SOCKS5's reply or an
  HTTP 4xx) or nothing, and a closed connection;
- live, against `wgpy proxy` run as nobody in the proxy lab (wgpy/lab/proxy.py), each request on
  a connection of its own: the proxy answers or closes every one, stays alive, logs no traceback
  and no key (even at LOG_LEVEL=verbose), and a legitimate SOCKS5 connection held open through
  the whole run keeps echoing its bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import sys
import traceback
from dataclasses import dataclass, field

from benchmarks.hardening import Figure
from wgpy.lab.proxy import (
    REFUSING_PORT,
    SERVICE_NAME,
    SERVICE_V4,
    TCP_ECHO,
    proxy_lab,
    response_status,
    socks5_open,
)
from wgpy.proxy.http import HttpProxyConnection
from wgpy.proxy.http import Rejected as HttpRejected
from wgpy.proxy.relay import close_quietly
from wgpy.proxy.socks5 import Phase, Socks5Connection, encode_address
from wgpy.proxy.socks5 import Rejected as Socks5Rejected

SOCKS, HTTP = 1090, 3138
BATCH = 50  # live requests in flight at once
ANSWER_TIMEOUT = 10.0  # seconds for the proxy to answer or close a request's connection


@dataclass
class ProxyFuzzResult:
    requests: int = 0
    rejected: int = 0  # in process: requests that ended in a rejection
    crashes: list[str] = field(default_factory=list)
    unanswered: int = 0  # live: connections neither answered nor closed in time
    legit_exchanges: int = 0  # live: echoes through the connection held open
    legit_broken: bool = False
    proxy_alive: bool = True
    log_faults: int = 0

    def record_crash(self, request: bytes, what: str) -> None:
        if len(self.crashes) < 20:
            self.crashes.append(f"{what}\n--- request:\n{request[:500]!r}")

    @property
    def held(self) -> bool:
        return (
            not self.crashes
            and not self.unanswered
            and not self.legit_broken
            and self.proxy_alive
            and not self.log_faults
        )


# Generation ---------------------------------------------------------------------------------


def socks5_request(rng: random.Random) -> bytes:
    host = rng.choice([SERVICE_V4, SERVICE_NAME, "fd00:17::1", "x" * rng.randint(1, 255)])
    port = rng.choice([TCP_ECHO, REFUSING_PORT, 0, 65535])
    greeting = rng.choice([b"\x05\x01\x00", b"\x05\x02\x00\x02", b"\x05\x01\x02"])
    login = b"\x01\x01u\x01p" if greeting.endswith(b"\x02") and rng.random() < 0.5 else b""
    command = bytes([5, rng.choice([1, 1, 1, 2, 3, 9]), 0])
    return greeting + login + command + encode_address(host, port)


def http_request(rng: random.Random) -> bytes:
    target = rng.choice([f"{SERVICE_V4}:{TCP_ECHO}", f"{SERVICE_NAME}:{REFUSING_PORT}"])
    if rng.random() < 0.5:
        head = f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n"
    else:
        head = f"POST http://{target}/x HTTP/1.1\r\nHost: {target}\r\nContent-Length: 3\r\n"
    extra = "".join(
        f"X-{index}: {'v' * rng.randint(0, 40)}\r\n" for index in range(rng.randint(0, 5))
    )
    return (head + extra + "\r\n").encode() + (b"abc" if head.startswith("POST") else b"")


def garbage(valid: bytes, rng: random.Random) -> bytes:
    roll = rng.random()
    if roll < 0.1:
        return rng.randbytes(rng.randint(0, 300))
    if roll < 0.2:
        return valid[: rng.randint(0, len(valid))]
    if roll < 0.25:
        return valid + rng.choice([b"A", b"\r\nX: y", b"\x00"]) * rng.randint(20_000, 70_000)
    mutated = bytearray(valid)
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(len(mutated) + 1)
        kind = rng.randrange(4)
        if kind == 0 and at < len(mutated):
            mutated[at] ^= 1 << rng.randrange(8)
        elif kind == 1:
            mutated[at:at] = rng.randbytes(rng.randint(1, 8))
        elif kind == 2:
            del mutated[at : at + rng.randint(1, 8)]
        else:
            mutated[at:at] = mutated[at : at + rng.randint(1, 16)] * rng.randint(2, 20)
    return bytes(mutated)


def generate(rng: random.Random) -> tuple[str, bytes]:
    if rng.random() < 0.5:
        return "socks5", garbage(socks5_request(rng), rng)
    return "http", garbage(http_request(rng), rng)


# In process ---------------------------------------------------------------------------------


def fuzz_in_process(count: int, seed: int) -> ProxyFuzzResult:
    rng = random.Random(seed)
    result = ProxyFuzzResult()
    for _ in range(count):
        protocol, request = generate(rng)
        result.requests += 1
        try:
            rejected = (_socks5 if protocol == "socks5" else _http)(request, rng)
            result.rejected += rejected
        except Exception:
            result.record_crash(request, traceback.format_exc())
    return result


def _pieces(data: bytes, rng: random.Random) -> list[bytes]:
    cuts = sorted(rng.sample(range(1, len(data)), min(3, len(data) - 1))) if len(data) > 1 else []
    return [data[start:end] for start, end in zip([0, *cuts], [*cuts, len(data)], strict=True)]


def _socks5(request: bytes, rng: random.Random) -> bool:
    connection = Socks5Connection({"u": "p"} if rng.random() < 0.3 else None)
    events = [event for piece in _pieces(request, rng) for event in connection.receive(piece)]
    assert len(events) <= 1, f"{len(events)} events from one request"
    if events and isinstance(events[0], Socks5Rejected):
        assert connection.phase == Phase.CLOSED
        reply = connection.data_to_send()
        assert len(reply) in (0, 2, 4, 12, 22) or reply[-10:-8] != b"\x05\x00", reply
        return True
    return False


def _http(request: bytes, rng: random.Random) -> bool:
    connection = HttpProxyConnection()
    events = [event for piece in _pieces(request, rng) for event in connection.receive(piece)]
    rejections = [event for event in events if isinstance(event, HttpRejected)]
    if rejections:
        assert len(rejections) == 1 and events[-1] is rejections[0]
        reply = connection.data_to_send()
        if reply:
            assert 400 <= response_status(reply) < 500, reply
        return True
    return False


# Against a live proxy -----------------------------------------------------------------------


def fuzz_live(count: int, seed: int) -> ProxyFuzzResult:
    """The requests at a `wgpy proxy` of its own, in the proxy lab."""
    result = ProxyFuzzResult()
    with proxy_lab() as lab:
        process = lab.start_proxy(
            "--socks5", str(SOCKS), "--http", str(HTTP), "--connect-timeout", "2",
            environment={"LOG_LEVEL": "verbose"},
        )  # fmt: skip
        with lab.ns.entered():
            asyncio.run(_fuzz_live(result, count, seed))
        result.proxy_alive = process.poll() is None
        lab.ns.stop(process)
        log = lab.output(process)
        private_key = re.search(r"PrivateKey = (\S+)", lab.config.read_text())
    assert private_key is not None
    result.log_faults = (
        log.count("Traceback")
        + sum(line.startswith("ERROR:") for line in log.splitlines())
        + (private_key[1] in log)  # no key in the log, even at verbose
    )
    if result.log_faults:
        result.crashes.append(f"proxy log:\n{log[-3000:]}")
    return result


async def _fuzz_live(result: ProxyFuzzResult, count: int, seed: int) -> None:
    rng = random.Random(seed)
    legit_reader, legit_writer, _ = await socks5_open(("127.0.0.1", SOCKS), SERVICE_V4, TCP_ECHO)
    try:
        while result.requests < count:
            batch = [generate(rng) for _ in range(min(BATCH, count - result.requests))]
            result.requests += len(batch)
            await asyncio.gather(*(_send(result, protocol, request) for protocol, request in batch))
            token = rng.randbytes(64)
            legit_writer.write(token)
            try:
                async with asyncio.timeout(ANSWER_TIMEOUT):
                    echoed = await legit_reader.readexactly(len(token))
            except (OSError, TimeoutError, asyncio.IncompleteReadError):
                echoed = b""
            if echoed != token:
                result.legit_broken = True
                return
            result.legit_exchanges += 1
    finally:
        await close_quietly(legit_writer)


async def _send(result: ProxyFuzzResult, protocol: str, request: bytes) -> None:
    """One request on a connection of its own, then end of input; the proxy must answer and
    close (or close) within ANSWER_TIMEOUT. A connection the proxy relays (a request that stayed
    valid) is closed by the echo service once our end of input reaches it."""
    port = SOCKS if protocol == "socks5" else HTTP
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError as error:
        result.record_crash(request, f"proxy unreachable: {error}")
        return
    try:
        async with asyncio.timeout(ANSWER_TIMEOUT):
            writer.write(request)
            with contextlib.suppress(OSError):
                await writer.drain()
                writer.write_eof()
            while await reader.read(65536):
                pass
    except TimeoutError:
        result.unanswered += 1
        result.record_crash(request, f"{protocol}: neither answered nor closed")
    except OSError:
        pass  # a reset closes too
    finally:
        await close_quietly(writer)


def run(in_process_count: int, live_count: int, seed: int) -> list[Figure]:
    """Both halves, as the fuzz area's figures."""
    in_process = fuzz_in_process(in_process_count, seed)
    live = fuzz_live(live_count, seed)
    for finding in [*in_process.crashes, *live.crashes]:
        print(f"fuzz finding (proxy):\n{finding}\n", file=sys.stderr)
    return [
        Figure(
            "fuzz", "proxy requests (in process)",
            f"{in_process.requests:,}; {in_process.rejected:,} rejected; "
            f"{len(in_process.crashes)} crashes",
            in_process.held and in_process.requests >= in_process_count,
            "garbage SOCKS5 and HTTP requests through wgpy.proxy.socks5 and wgpy.proxy.http: "
            "nothing raised, every rejection a protocol error reply (or none) and a close",
        ),
        Figure(
            "fuzz", "proxy requests (live wgpy proxy)",
            f"{live.requests:,}; {live.unanswered} unanswered; {len(live.crashes)} crashes",
            live.held and live.requests >= live_count,
            f"each on its own connection to a wgpy proxy run as nobody: answered or closed "
            f"within {ANSWER_TIMEOUT:g} s, proxy alive, no traceback or key in its log, a SOCKS5 "
            f"connection held open echoed {live.legit_exchanges:,} times unharmed",
        ),
    ]  # fmt: skip
