"""free_port(): a loopback TCP port nothing listens on, for the test servers.

Chosen below the kernel's ephemeral range (32768-60999 on Linux): a port that
bind(0) hands out is in that range, and an outgoing connection of another
test running in parallel could take it before our server binds it ("Address
already in use"). Random, so parallel test files rarely pick the same one;
never the same one twice in one process."""
import random
import socket

_given = set()


def free_port():
    for _ in range(1000):
        port = random.randrange(10000, 32000)
        if port in _given:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _given.add(port)
        return port
    raise RuntimeError("no free port in 10000-32000")
