"""The user-space network stack for rootless use: IP packets in, IP packets out, `now` passed in."""
