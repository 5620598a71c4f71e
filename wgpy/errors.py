"""One exception hierarchy: every error wgpy raises on purpose is a `WgpyError`.

Operator input (keys, configs, the configuration socket, the command line) raises one with a
precise message. Attacker-controlled input on the data path never raises out of the device: it is
dropped and counted (see `wgpy.core.drops.DropReason`). System calls at the edges raise OSError.

    WgpyError
        InvalidKeyError    a key that is not 32 bytes of base64
        ConfigError        a config file's error, by file, line and key
        UapiError          a configuration-socket request failed, with its errno
        ProtocolError      a message failed to parse or authenticate
        InvalidValue       a value wg would refuse: port, fwmark, IP, keepalive, ... (values)
            InvalidAddress, UnmatchedBrace                                        (values)
        ResolutionError    an Endpoint's name that does not resolve               (resolver)
        OffloadError       a TUN packet that its virtio-net header does not fit  (io.vnet.segment)
        CommandError       what `wgpy` prints before it exits with status 1       (cli.wg)
        CaptureError       why `wgpy capture` could not run                       (cli.capture)
        QuickError         why `wgpy-quick` cannot go on                          (quick)
            StepFailed                                                            (quick.execute)
        RunError           why `wgpy run` could not make its namespace            (run.session)
        CommandFailed      a command the namespace lab ran exited nonzero         (lab.netns)
        HookFailed         why a WGPY_PEER_HOOK answer refuses a key              (io.peer_hook)
        TcpError           a use of a connection its state does not allow         (netstack.tcp)
        NotAppliedWarning  a wg-quick key a tunnel without an interface ignores   (tunnel)
        ResolutionFailed   no DNS server of the tunnel answered for a name        (proxy.resolve)
        SpecError          a proxy option's value that does not read              (proxy.spec)
        Socks5Failed       the lab's SOCKS5 client was refused                    (lab.proxy)

The generic ones live here, the others beside the one module that raises them. InvalidValue,
ResolutionError, OffloadError and SpecError are ValueErrors too, ResolutionFailed and
Socks5Failed OSErrors, NotAppliedWarning a UserWarning, and CommandFailed a
subprocess.CalledProcessError, as their callers expect. Interrupted (quick.interrupt), what stops
wgpy-quick on a signal, is a KeyboardInterrupt instead, so that no `except Exception` takes it.
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
