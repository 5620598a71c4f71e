"""`wgpy probe ENDPOINT`: handshake with a WireGuard server as one of its peers; say how it went.

Exit status, as ping's: 0 when at least one attempt got a valid response (and, with --ping, the echo
reply); 1 when none did, with the last reason on stderr; 2 when the probe could not run (arguments,
key files, no route to the endpoint).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import statistics
import sys
from collections.abc import Sequence
from typing import Any

from wgpy.cli import argparse_exit_returned
from wgpy.cli.wg import CommandError, parse_endpoint, parse_key, read_key_file
from wgpy.core.constants import KEY_LEN
from wgpy.core.endpoint import Endpoint
from wgpy.core.keys import to_base64
from wgpy.core.probe import AttemptResult, Outcome, Ping, ProbeKeys
from wgpy.io.probe import probe

PROG = "wgpy probe"
EPILOG = """\
The server takes the probe for the peer whose private key it uses: it answers it, and sends that
peer's traffic to the probe's address until the peer next sends. Pass the key in a file where you
can: --key puts it on the command line, which other users may read.
"""


@argparse_exit_returned
def run(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        endpoint, keys, ping = _settings(args)
    except (CommandError, ValueError) as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 2
    report = None if args.json else _print_attempt
    if not args.json:
        print(f"probing {endpoint}, peer {to_base64(keys.peer_public_key)}")
    try:
        results = probe(
            endpoint,
            keys,
            count=args.count,
            timeout=args.timeout,
            interval=args.interval,
            ping=ping,
            report=report,
        )
    except OSError as error:  # No route to the endpoint from here, or no such address family.
        print(f"{PROG}: {endpoint}: {error.strerror or error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    if args.json:
        print(json.dumps(to_json(endpoint, keys, results), indent=2))
    else:
        print(_summary(results))
    ok = any(result.ok for result in results)
    if not ok:
        print(f"{PROG}: {results[-1].reason}", file=sys.stderr)
    return 0 if ok else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Handshake with a WireGuard server over UDP, as one of its peers: "
        "no interface, no privileges.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("endpoint", metavar="ENDPOINT", help="HOST:PORT or [IPv6]:PORT")
    parser.add_argument("--peer-key", required=True, metavar="PUB", help="the server's public key")
    identity = parser.add_mutually_exclusive_group(required=True)
    identity.add_argument("--key-file", metavar="F", help="our private key, as wg genkey writes")
    identity.add_argument("--key", metavar="PRIV", help="our private key in base64")
    parser.add_argument("--psk-file", metavar="F", help="the preshared key, if the peer has one")
    parser.add_argument("--count", type=int, default=1, metavar="N", help="attempts (1)")
    parser.add_argument(
        "--timeout", type=float, default=5.0, metavar="S", help="wait per answer (5 s)"
    )
    parser.add_argument(
        "--interval", type=float, default=1.0, metavar="S",
        help="pause between attempts (1 s; the server's 20 ms flood interval is kept anyway)",
    )  # fmt: skip
    parser.add_argument(
        "--ping", type=ipaddress.ip_address, metavar="ADDR",
        help="send an ICMP echo to ADDR through the session and wait for the reply",
    )  # fmt: skip
    parser.add_argument(
        "--address", type=ipaddress.ip_address, metavar="INNER",
        help="our tunnel address, the echo's source: one of the server's AllowedIPs for us",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print one JSON object at the end")
    return parser


def _settings(args: argparse.Namespace) -> tuple[Endpoint, ProbeKeys, Ping | None]:
    if args.count < 1 or args.timeout <= 0 or args.interval < 0:
        raise ValueError("--count and --timeout must be positive, --interval not negative")
    endpoint = parse_endpoint(args.endpoint)
    private_key = read_key_file(args.key_file) if args.key_file else parse_key(args.key)
    preshared_key = read_key_file(args.psk_file) if args.psk_file else None
    if preshared_key == bytes(KEY_LEN):  # an empty file, as wg reads it: no preshared key
        preshared_key = None
    keys = ProbeKeys(private_key, parse_key(args.peer_key), preshared_key)
    if (args.ping is None) != (args.address is None):
        raise ValueError("--ping and --address go together")
    ping = None
    if args.ping is not None:
        if args.ping.version != args.address.version:
            raise ValueError("--ping and --address must be of one IP version")
        ping = (args.address, args.ping)
    return endpoint, keys, ping


# -- output ------------------------------------------------------------------------------------


def _print_attempt(result: AttemptResult) -> None:
    print(describe(result), flush=True)


def describe(result: AttemptResult) -> str:
    """One line for an attempt."""
    if result.outcome is not Outcome.ANSWERED:
        words = f"{result.outcome.value}: {result.reason}"
    else:
        words = f"response in {_format_ms(result.rtt)}"
        if result.ping is not None:
            words += (
                f", echo reply in {_format_ms(result.ping_rtt)}"
                if result.ok
                else f": {result.reason}"
            )
    cookie = "cookie reply (server under load), retried with mac2; " if result.cookie_reply else ""
    return cookie + words


def _summary(results: Sequence[AttemptResult]) -> str:
    answered = [r.rtt for r in results if r.outcome is Outcome.ANSWERED and r.rtt is not None]
    line = f"{len(results)} attempt{'' if len(results) == 1 else 's'}, {len(answered)} answered"
    if answered:
        line += (
            f", rtt min/avg/max {min(answered) * 1e3:.3f}/{statistics.fmean(answered) * 1e3:.3f}"
            f"/{max(answered) * 1e3:.3f} ms"
        )
    return line


def to_json(
    endpoint: Endpoint, keys: ProbeKeys, results: Sequence[AttemptResult]
) -> dict[str, Any]:
    return {
        "endpoint": str(endpoint),
        "peer": to_base64(keys.peer_public_key),
        "ok": any(result.ok for result in results),
        "attempts": [_attempt_json(result) for result in results],
    }


def _attempt_json(result: AttemptResult) -> dict[str, Any]:
    ping = None
    if result.ping is not None:
        ping = {"outcome": result.ping.value, "rtt_ms": _milliseconds(result.ping_rtt)}
    return {
        "outcome": result.outcome.value,
        "ok": result.ok,
        "reason": result.reason,
        "rtt_ms": _milliseconds(result.rtt),
        "cookie_reply": result.cookie_reply,
        "ping": ping,
    }


def _milliseconds(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1e3, 3)


def _format_ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.3f} ms"


if __name__ == "__main__":
    raise SystemExit(run(sys.argv[1:]))
