"""The one place interop/ takes the namespace harness from."""

from wgpy.lab.netns import (
    Namespace,
    WgKeys,
    ip,
    unique_ifname,
    veth_pair,
    wait_until,
    wg_genkey,
)

__all__ = [
    "Namespace",
    "WgKeys",
    "ip",
    "unique_ifname",
    "veth_pair",
    "wait_until",
    "wg_genkey",
]
