"""The master's metrics endpoint (SPEC 6.4): `GET /metrics` over HTTP, 404 elsewhere.

One thread, non-blocking sockets, one selector. It serves the last text the
main thread published (bytes, never changed, swapped whole by `publish`),
never the policy's data, and decides nothing. Every client is bounded so
that a slow or hostile one costs only its own connection: the request must
arrive whole within REQUEST_TIMEOUT and fit in MAX_REQUEST bytes; an answer
not read for SEND_TIMEOUT is dropped, and so is one not read whole within
ANSWER_TIMEOUT (a reader that takes a byte now and then would keep it for
ever); at most MAX_CONNECTIONS are open, and when all are taken, the one that
has waited longest for its request makes room (a scraper sends its request at
once; a slowloris never finishes it), else the answer that has taken longest,
once it has taken longer than SLOW_ANSWER (a scrape of megabytes takes well
under a second). Every answer closes its connection.
"""
import re
import selectors
import socket
import time

from ..acceptpause import AcceptPause
from ..metrics import CONTENT_TYPE
from ..observer import Observer
from .config import LISTEN_ADDRESS

MAX_REQUEST = 8192            # bytes of request line and headers
REQUEST_TIMEOUT = 5.0         # from accept to the end of the headers
SEND_TIMEOUT = 5.0            # an answer that makes no progress for that long is dropped
ANSWER_TIMEOUT = 60.0         # an answer not read whole by then is dropped
SLOW_ANSWER = 5.0             # an answer going on longer may make room for a new client
MAX_CONNECTIONS = 64
BACKLOG = 128
HEADERS_END = re.compile(rb'\r?\n\r?\n')


def listen(address):
    """A listening, non-blocking socket on "HOST:PORT" (HOST a name or an address,
    an IPv6 one in brackets)."""
    host, port = LISTEN_ADDRESS.match(address).groups()
    family, kind, proto, _, sockaddr = socket.getaddrinfo(
        host.strip('[]'), int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
        sock.listen(BACKLOG)
    except BaseException:
        sock.close()
        raise
    return sock


class Connection:
    def __init__(self, sock, now):
        self.sock = sock
        self.request = bytearray()
        self.answer = None                      # what is left to send: [memoryview, ...]
        self.answered_at = None
        self.deadline = now + REQUEST_TIMEOUT

    @property
    def reading(self):
        return self.answer is None

    def went_on(self, now):
        """Its answer started or made progress at `now`: the next deadline."""
        self.deadline = min(now + SEND_TIMEOUT, self.answered_at + ANSWER_TIMEOUT)


class MetricsServer(Observer):
    def __init__(self, sock, post):
        super().__init__('metrics', post)
        self.sock = sock
        self.body = None                        # the text in force (bytes)
        self.connections = {}                   # fd -> Connection

    def publish(self, body):
        """From the main thread: the text to serve from now on (one reference swap)."""
        self.body = body

    def observe(self):
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.sock, selectors.EVENT_READ)
        self.selector.register(self.wake_r, selectors.EVENT_READ)
        self.pause = AcceptPause(self.selector, self.sock, what='metrics scrapes')
        try:
            while not self.stopping:
                for key, events in self.selector.select(self._timeout()):
                    if key.fileobj is self.sock:
                        self._accept()
                    elif key.fileobj == self.wake_r:
                        self.read_wakeups()
                    else:
                        self._serve(key.data, events)
                self._expire(time.monotonic())
        finally:
            for connection in list(self.connections.values()):
                self._close(connection)
            self.selector.close()
            self.sock.close()

    def _timeout(self):
        deadlines = [c.deadline for c in self.connections.values()] + [self.pause.until]
        deadlines = [d for d in deadlines if d is not None]
        return max(0.0, min(deadlines) - time.monotonic()) if deadlines else None

    def _accept(self):
        for _ in range(MAX_CONNECTIONS):        # then the others get their turn
            try:
                sock, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:              # out of fds: rest, or it spins
                self.pause.rest(err)
                return
            sock.setblocking(False)
            if len(self.connections) >= MAX_CONNECTIONS and not self._make_room():
                sock.close()
                continue
            connection = Connection(sock, time.monotonic())
            self.connections[sock.fileno()] = connection
            self.selector.register(sock, selectors.EVENT_READ, connection)

    def _make_room(self):
        """Close the connection that has waited longest for its request, or else the
        one whose answer has taken longest, if longer than SLOW_ANSWER."""
        waiting = [c for c in self.connections.values() if c.reading]
        if waiting:
            self._close(min(waiting, key=lambda c: c.deadline))
            return True
        slow = min(self.connections.values(), key=lambda c: c.answered_at, default=None)
        if slow is None or time.monotonic() - slow.answered_at < SLOW_ANSWER:
            return False
        self._close(slow)
        return True

    def _serve(self, connection, events):
        try:
            if connection.reading and events & selectors.EVENT_READ:
                self._read(connection)
            elif not connection.reading and events & selectors.EVENT_WRITE:
                self._send(connection)
        except OSError:                         # reset by the peer, and the like
            self._close(connection)

    def _read(self, connection):
        data = connection.sock.recv(MAX_REQUEST + 1 - len(connection.request))
        if not data:
            self._close(connection)
            return
        # only the new bytes (and the 3 before them) are searched: a client that
        # sends one byte at a time must not make the thread rescan its whole head
        start = max(0, len(connection.request) - 3)
        connection.request += data
        end = HEADERS_END.search(connection.request, start)
        if end is not None:
            self._answer(connection, *answer_to(bytes(connection.request[:end.start()]),
                                                self.body))
        elif len(connection.request) > MAX_REQUEST:
            self._answer(connection, *error(431, 'Request Header Fields Too Large'))

    def _answer(self, connection, head, body):
        connection.answer = [memoryview(head)] + ([memoryview(body)] if body else [])
        connection.answered_at = time.monotonic()
        connection.went_on(connection.answered_at)
        self.selector.modify(connection.sock, selectors.EVENT_WRITE, connection)
        self._send(connection)

    def _send(self, connection):
        while connection.answer:
            try:
                sent = connection.sock.send(connection.answer[0], socket.MSG_NOSIGNAL)
            except (BlockingIOError, InterruptedError):
                return                          # the reader's turn: EVENT_WRITE says when
            connection.went_on(time.monotonic())
            connection.answer[0] = connection.answer[0][sent:]
            if not connection.answer[0]:
                connection.answer.pop(0)
        self._close(connection)

    def _expire(self, now):
        self.pause.resume_if_due(now)
        for connection in [c for c in self.connections.values() if c.deadline <= now]:
            self._close(connection)

    def _close(self, connection):
        if self.connections.pop(connection.sock.fileno(), None) is not None:
            self.selector.unregister(connection.sock)
        connection.sock.close()


def answer_to(head, body):
    """(status line and headers, body) for a request's head (bytes, untrusted)."""
    line = head.split(b'\n', 1)[0].rstrip(b'\r')
    parts = line.split(b' ')
    if len(parts) != 3 or not parts[2].startswith(b'HTTP/1.'):
        return error(400, 'Bad Request')
    method, target = parts[0], parts[1].split(b'?', 1)[0]
    if method not in (b'GET', b'HEAD'):
        return error(405, 'Method Not Allowed', b'Allow: GET, HEAD\r\n')
    if target != b'/metrics':
        return error(404, 'Not Found')
    if body is None:
        return error(503, 'Service Unavailable')
    head = response_head(200, 'OK', CONTENT_TYPE, len(body))
    return head, (body if method == b'GET' else b'')


def error(status, reason, extra=b''):
    text = ('%d %s: the metrics are at GET /metrics\n' % (status, reason)).encode()
    return response_head(status, reason, 'text/plain; charset=utf-8', len(text), extra), text


def response_head(status, reason, content_type, length, extra=b''):
    return ('HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n'
            % (status, reason, content_type, length)).encode() + extra + b'\r\n'
