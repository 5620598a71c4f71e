"""The virtio-net offloads done in user space: the header a TUN with IFF_VNET_HDR speaks, super-
packets cut into segments (`segment`), segments merged into super-packets (`coalesce`), and the
Internet checksums both need (`checksum`). Pure functions on bytes; the TUN edge calls them."""
