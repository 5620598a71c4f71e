"""What a scenario gets to work with, and everything it made, undone when it ends."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import ExitStack
from typing import Any

from interop.errors import ScenarioFailure
from interop.lab import Lab
from interop.links import Link, LinkOptions, build_link, teardown_link
from interop.shell import NamespaceShell
from interop.wire import Capture


class Context:
    """One scenario against one peer: the wgpy side, the peer's host, and cleanup."""

    def __init__(self, lab: Lab, peer: str) -> None:
        self.lab = lab
        self.peer = peer
        self.w = lab.w
        self.local_shell: NamespaceShell = lab.local_shell()
        self.notes: list[str] = []
        self._cleanup = ExitStack()
        self._links: list[Link] = []
        self._captures: list[Capture] = []
        self.local, self.remote = lab.hosts(peer)

    def link(self, **options: Any) -> Link:
        """A configured tunnel (see LinkOptions), removed when the scenario ends."""
        return self._keep(build_link(self.local, self.remote, LinkOptions(**options)))

    def proxy_link(self, proxy_options: Sequence[str], **options: Any) -> Link:
        """A tunnel (see LinkOptions) whose wgpy side is `wgpy proxy` with `proxy_options` on
        its user-space stack, as nobody with no capabilities (see ProxyHost), removed when the
        scenario ends."""
        local = self.lab.proxy_host(self.peer, proxy_options)
        return self._keep(build_link(local, self.remote, LinkOptions(**options)))

    def _keep(self, link: Link) -> Link:
        self._links.append(link)
        self._cleanup.callback(teardown_link, link)
        return link

    def capture(self, link: Link, capture_filter: str = "") -> Capture:
        """tshark on W's side of the underlay, for the scenario's length; by default it keeps
        the datagrams to and from wgpy's port."""
        local = link.local
        capture = Capture(
            self.w,
            local.host.underlay_ifname,
            self.lab.workdir / f"{local.ifname}-{len(self._captures)}.pcap",
            [local.port, *(remote.port for remote in link.remotes)],
        )
        self._captures.append(capture)
        self._cleanup.callback(capture.stop)
        return capture.start(capture_filter or f"udp port {local.port}")

    def defer(self, callback: Callable[[], object]) -> None:
        """Run `callback` when the scenario ends, before the links are removed."""
        self._cleanup.callback(callback)

    def note(self, text: str) -> None:
        """A fact worth reporting with the result (timings, counts)."""
        self.notes.append(text)

    def close(self) -> None:
        self._cleanup.close()

    def diagnostics(self) -> str:
        """The logs of every interface the scenario made, and the guest's console if it used it."""
        parts: dict[str, None] = {}  # ordered, and the console shows once however many it had
        for link in self._links:
            for interface in (link.local, *link.remotes):
                parts[interface.host.diagnostics(interface.ifname)] = None
        if self.peer == "kernel" and self.lab.guest is not None:
            parts[self.lab.guest.console_report()] = None
        return "\n".join(parts)


def expect(condition: bool, reason: str) -> None:
    """Fail the scenario with `reason` unless `condition` holds."""
    if not condition:
        raise ScenarioFailure(reason)
