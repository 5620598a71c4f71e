"""The WireGuard protocol, pure: bytes, keys, `now` and randomness in; actions and bytes out.

Nothing here opens a socket or a file, starts a thread or a process, or reads a clock; the edges
in `wgpy.io` do, and `tests/unit/test_layout.py` holds every module here to it. `device.Device` is
the entry point: packets and datagrams in, actions out. `probe.HandshakeAttempt`, behind
`wgpy probe`, is a smaller machine of the same shape.
"""
