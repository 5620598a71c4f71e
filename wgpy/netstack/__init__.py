"""A user-space TCP/UDP/ICMP endpoint stack for the rootless mode: pure and sans-IO like the core.

IP packets in (`Stack.receive`), IP packets out (`Stack.packets_to_send`), `now` passed in and one
deadline out (`Stack.next_deadline`, `Stack.handle_timer`). wgpy.tunnel drives it on asyncio.
"""
