"""free_port(): a loopback TCP port nothing listens on, for the test servers.

Chosen below the kernel's ephemeral range (32768-60999 on Linux): a port that
bind(0) hands out is in that range, and an outgoing connection of another
test running in parallel could take it before our server binds it ("Address
already in use").

Parallel test files never pick the same port: the range is cut into blocks
of BLOCK ports, and a test process hands out ports only from blocks it holds
an exclusive flock on (a file per block under the temporary directory). The
lock goes with the process, however it ends, so a block is free again as
soon as its test file is. Picking at random, as this did before, let two
files running at once choose the same port now and then (a CI run failed
with a c2s that could not listen). Never the same port twice in one
process."""
import fcntl
import os
import random
import socket
import tempfile

LOW, HIGH = 10000, 32000
BLOCK = 100
LOCK_DIR = os.path.join(tempfile.gettempdir(), f"weft-test-ports-{os.getuid()}")

_given = set()
_held = []        # (fd, first port) of each block this process holds
_next = None      # the next port to try in the newest block


def _claim_block():
    """Takes the lock of a free block and returns its first port."""
    os.makedirs(LOCK_DIR, exist_ok=True)
    nblocks = (HIGH - LOW) // BLOCK
    start = random.randrange(nblocks)
    for k in range(nblocks):
        b = (start + k) % nblocks
        fd = os.open(os.path.join(LOCK_DIR, f"{b}.lock"), os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        _held.append((fd, LOW + b * BLOCK))
        return LOW + b * BLOCK
    raise RuntimeError(f"every block of ports in {LOW}-{HIGH} is held by another test")


def free_port():
    global _next
    for _ in range(HIGH - LOW):
        if _next is None or _next >= _held[-1][1] + BLOCK:
            _next = _claim_block()
        port = _next
        _next += 1
        if port in _given:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue          # something outside the tests has it
        _given.add(port)
        return port
    raise RuntimeError(f"no free port in {LOW}-{HIGH}")
