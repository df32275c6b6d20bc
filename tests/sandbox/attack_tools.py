"""Tool source for the attack matrix (reference/sandbox.md): each function tries one escape.

Read as text and run only inside the sandbox. Functions report what got through instead of raising, so a
test can assert on exactly what happened.
"""

import builtins
import ctypes
import decimal
import os
import random
import socket
import time

MARKER = ["sleep", "20.4242"]  # leftovers of the fork bombs are found on the host by this argument


def add(a, b):
    return a + b


def spin():
    while True:
        pass


def c_loop():
    return sum(range(10**12))


def allocate(gib):
    return len(bytearray(gib << 30))


def close_pipes_and_hang():
    os.closerange(3, 4096)  # the answer pipe among them: the sandbox sees EOF, not an answer
    time.sleep(60)


def fork_bomb(limit, escape):
    forks = 0
    for _ in range(limit):
        try:
            pid = os.fork()
        except OSError:
            break
        if pid == 0:
            if escape:
                os.setsid()
            try:
                os.execv("/bin/sleep", MARKER)
            finally:
                os._exit(0)
        forks += 1
    return forks


def write_files(paths):
    written = []
    for path in paths:
        try:
            with open(path, "w") as f:
                f.write("pwned")
            written.append(path)
        except OSError:
            pass
    return written


def read_files(paths):
    leaked = {}
    for path in paths:
        try:
            with open(path, "rb") as f:
                leaked[path] = f.read(200).decode("latin-1")
        except OSError:
            pass
    return leaked


def environment():
    return dict(os.environ)


def big_file(mib):
    with open("big.bin", "wb") as f:
        f.write(b"x" * (mib << 20))
    return os.path.getsize("big.bin")


def network(port):
    got = []
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=0.5)
        s.sendall(b"pwned")
        got.append("tcp")
    except OSError:
        pass
    try:
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.sendto(b"pwned", ("127.0.0.1", port))
        got.append("udp")
    except OSError:
        pass
    return got


def unix_socket(path):
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        s.sendall(b"pwned")
        return "connected"
    except OSError:
        return None


def event_loop():
    import asyncio

    async def main():
        await asyncio.sleep(0)
        return "asyncio works"

    return asyncio.run(main())


def kill_parents(host_pids):
    killed = []
    for pid in [os.getppid(), 1, *host_pids]:
        try:
            os.kill(pid, 9)
            killed.append(pid)
        except OSError:
            pass
    return killed


def segfault():
    return ctypes.string_at(0)


def pollute():
    global POLLUTED
    POLLUTED = True
    builtins.len = lambda x: -1
    decimal.getcontext().prec = 3
    with open("left-behind.txt", "w") as f:
        f.write("state")
    os.environ["LEAK"] = "1"
    return True


def inspect_state():
    return {
        "global": "POLLUTED" in globals(),
        "builtins": len([1, 2]) != 2,
        "decimal": str(decimal.Decimal(1) / decimal.Decimal(7)),
        "file": os.path.exists("left-behind.txt"),
        "env": "LEAK" in os.environ,
        "scratch": sorted(os.listdir(".")),
    }


def nondeterminism():
    return [hash("abc"), list({"x", "y", "z", "w"}), random.random(), str(object.__hash__(None) is None)]
