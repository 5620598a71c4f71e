"""The I/O edges: the TUN device and the UDP sockets the sans-IO device is driven through."""
