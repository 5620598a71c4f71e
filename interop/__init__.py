"""The interop matrix: wgpy against Linux's WireGuard, wireguard-go and itself (see README.md)."""
