"""One exception hierarchy.

Operator input (keys, configs, the configuration socket, the command line) raises a subclass of
`WgpyError` with a precise message. Attacker-controlled input on the data path never raises out of
the device: it is dropped and counted (see `wgpy.core.device.DropReason`).
"""

from __future__ import annotations

import errno as _errno


class WgpyError(Exception):
    """Base of every error wgpy raises on purpose."""


class InvalidKeyError(WgpyError):
    """A key that is not 32 bytes of base64."""


class ConfigError(WgpyError):
    """A configuration file error, located by file, line and key."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        key: str | None = None,
    ) -> None:
        self.file, self.line, self.key = file, line, key
        where = ":".join(str(part) for part in (file, line) if part is not None)
        prefix = f"{where}: " if where else ""
        keypart = f"{key}: " if key else ""
        super().__init__(f"{prefix}{keypart}{message}")


class UapiError(WgpyError):
    """A configuration-socket request failed; `errno` is what the reply carries (negated)."""

    def __init__(self, errno: int, message: str) -> None:
        self.errno = errno
        super().__init__(f"{message} ({_errno.errorcode.get(errno, errno)})")


class ProtocolError(WgpyError):
    """A message failed to parse or authenticate. Caught by the device, which counts a drop."""
