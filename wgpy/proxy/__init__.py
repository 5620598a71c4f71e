"""SOCKS5, HTTP and port forwards over a `Network` (wgpy.proxy.network): the user-space stack's
tunnel, or the host's own sockets. The protocols are sans-IO (socks5.py, http.py); the asyncio
listeners and relays take a Network and carry the protocols' decisions out."""
