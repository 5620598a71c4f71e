"""wgpy: WireGuard in user space, in Python."""

from wgpy import compiled

__version__ = "0.1.0"

compiled.install()  # the stack's modules: their mypyc build or their sources (compiled.py)
