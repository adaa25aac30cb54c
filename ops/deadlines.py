"""Read deadlines: a client that dribbles its request is cut off when its time is up.

A socket timeout bounds one `recv`, not a request: a client sending a byte a second never trips
it, and holds a server thread for as long as it likes. So the server registers each read phase
here (the request head: ops/server.py; the body: ops/wsgi.py) with an absolute monotonic
deadline, and one watchdog thread per process shuts the socket down for reading when the
deadline passes: the blocked `recv` returns at once with end-of-stream, the thread is free, and
the reason is logged. Writing stays open, so an answer can still be sent.
"""

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field

logger = logging.getLogger("ops.requests")


@dataclass(eq=False)
class Watch:
    sock: socket.socket
    deadline: float
    reason: str  # what had not arrived, for the log line: "request head", "request body"
    extra: dict = field(default_factory=dict)
    expired: bool = False


class Watchdog:
    def __init__(self):
        self._lock = threading.Condition()
        self._watches: set[Watch] = set()
        self._pid = 0

    def watch(self, sock: socket.socket, seconds: float, reason: str, **extra) -> Watch:
        entry = Watch(sock, time.monotonic() + seconds, reason, extra)
        with self._lock:
            if self._pid != os.getpid():  # first use in this (forked) process
                self._pid = os.getpid()
                self._watches = set()
                threading.Thread(target=self._run, name="read-deadlines", daemon=True).start()
            self._watches.add(entry)
            self._lock.notify()
        return entry

    def release(self, entry: Watch) -> bool:
        """Stop watching; whether the deadline had passed (the socket was cut) before."""
        with self._lock:
            self._watches.discard(entry)
            return entry.expired

    def _run(self) -> None:
        while True:
            with self._lock:
                now = time.monotonic()
                due = [w for w in self._watches if w.deadline <= now]
                for entry in due:
                    self._watches.discard(entry)
                    entry.expired = True
                    self._cut(entry)
                wait = min((w.deadline for w in self._watches), default=now + 60) - now
                self._lock.wait(max(wait, 0.01))

    @staticmethod
    def _cut(entry: Watch) -> None:
        try:
            peer = entry.sock.getpeername()
        except OSError:
            peer = None
        try:
            entry.sock.shutdown(socket.SHUT_RD)
        except OSError:
            return  # already closed: nothing left to cut
        logger.warning(
            "cut a slow client: its %s did not arrive in time",
            entry.reason,
            extra={"reason": f"{entry.reason} timeout", "client": str(peer), **entry.extra},
        )


watchdog = Watchdog()
