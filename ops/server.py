"""The gunicorn worker production runs (ops/gunicorn.py): gthread, made safe against slow clients.

gunicorn's threaded worker serves each request in a thread of a pool (GUNICORN_THREADS per
worker) while its main loop watches idle connections. Two gaps remain that a slow client uses
to take every thread (slowloris), and this worker closes them:

- a new connection is handed to a thread only once its first bytes have arrived: until then
  it waits in the main loop's poller, costing no thread, and is closed after
  HTTP_HEADER_TIMEOUT_S if nothing came (gunicorn would park a thread on it for 5 s);
- a request head (request line and headers) must then be complete within
  HTTP_HEADER_TIMEOUT_S: past that the read deadline watchdog (ops/deadlines.py) cuts the
  connection and logs why. The body has a deadline of its own (HTTP_BODY_TIMEOUT_S, ops/wsgi.py).

A dribbling client thus holds one thread for a bounded time; the other threads serve on.
"""

import errno
import selectors
import time
from functools import partial

from gunicorn.workers import gthread

from .deadlines import watchdog


def header_timeout() -> float:
    from django.conf import settings

    return settings.HTTP_HEADER_TIMEOUT_S


class ThreadWorker(gthread.ThreadWorker):
    def accept(self, listener) -> None:
        try:
            client_sock, client_addr = listener.accept()
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        conn = gthread.TConn(self.cfg, client_sock, client_addr, listener.getsockname())
        # As gunicorn does for a connection a thread gave up waiting on (`_DEFER`): the poller
        # hands it to a thread when it is readable; murder_pending closes it when it is not.
        # pending_conns stays ordered by timeout: all of its entries get now + a constant.
        conn.timeout = time.monotonic() + min(header_timeout(), self.cfg.keepalive or 5)
        self.pending_conns.append(conn)
        self.poller.register(
            conn.sock, selectors.EVENT_READ, partial(self.on_pending_socket_readable, conn)
        )

    def handle(self, conn):
        # From the first byte of a request, its head has HTTP_HEADER_TIMEOUT_S to arrive.
        conn.head_watch = watchdog.watch(conn.sock, header_timeout(), "request head")
        try:
            return super().handle(conn)
        finally:
            watchdog.release(conn.head_watch)

    def handle_request(self, req, conn):
        watchdog.release(conn.head_watch)  # the head is in
        return super().handle_request(req, conn)
