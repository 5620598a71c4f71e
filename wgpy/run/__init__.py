"""`wgpy run CONFIG -- COMMAND`: one program's network through a tunnel, without root, on
Linux's own stack. `session` is the caller's side (the UDP sockets, signals, the exit status),
`inside` the namespace's (the TUN, routes, DNS, the interface and COMMAND)."""
