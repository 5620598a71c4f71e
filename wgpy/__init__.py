"""wgpy: WireGuard in user space, in Python."""

__version__ = "0.1.0"
