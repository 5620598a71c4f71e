"""`wgpy demo`: a VPN between two network namespaces, or (--simulated) two devices in memory."""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    if argv == ["--simulated"]:
        from wgpy.demo import simulated

        return simulated.main()
    if argv:
        print("Usage: wgpy demo [--simulated]", file=sys.stderr)
        return 1
    from wgpy.demo import namespaces

    return namespaces.main()
