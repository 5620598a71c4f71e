"""The one place interop/ takes the namespace harness (and the proxy lab's helpers) from."""

from wgpy.lab.netns import (
    Namespace,
    WgKeys,
    ip,
    unique_ifname,
    veth_pair,
    wait_until,
    wg_genkey,
)
from wgpy.lab.proxy import NOBODY, UNPRIVILEGED, listened_ports, listening

__all__ = [
    "NOBODY",
    "UNPRIVILEGED",
    "Namespace",
    "WgKeys",
    "ip",
    "listened_ports",
    "listening",
    "unique_ifname",
    "veth_pair",
    "wait_until",
    "wg_genkey",
]
