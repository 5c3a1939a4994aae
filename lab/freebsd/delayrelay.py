"""Delay/loss on a host's SSH path, for kernels without sch_netem: stdin/stdout <-> TCP, chunks held back.

Usage: delayrelay.py HOST PORT DELAY_MS LOSS_PCT. Each chunk waits DELAY_MS one way; a "lost" chunk
waits a further 200 ms, TCP's minimum retransmission timeout, which is what loss costs a TCP stream.
Order is kept, as TCP keeps it.
"""

import os
import queue
import random
import socket
import sys
import threading
import time

RTO = 0.2


def pump(read, write, delay: float, loss: float) -> None:
    q: queue.Queue[tuple[float, bytes]] = queue.Queue()

    def writer() -> None:
        while True:
            due, data = q.get()
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            if not data:
                os._exit(0)
            write(data)

    threading.Thread(target=writer, daemon=True).start()
    last = 0.0
    while True:
        data = read()
        extra = RTO if data and random.random() < loss else 0.0  # noqa: S311 - fault injection
        last = max(last, time.monotonic() + delay + extra)
        q.put((last, data))
        if not data:
            return


def main() -> None:
    host, port, delay_ms, loss_pct = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
    sock = socket.create_connection((host, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    delay, loss = delay_ms / 1000.0, loss_pct / 100.0

    def to_host(data: bytes) -> None:
        sock.sendall(data)

    def to_client(data: bytes) -> None:
        os.write(1, data)

    threading.Thread(target=pump, args=(lambda: sock.recv(65536), to_client, delay, loss), daemon=True).start()
    pump(lambda: os.read(0, 65536), to_host, delay, loss)
    time.sleep(delay + RTO + 0.1)


if __name__ == "__main__":
    main()
