"""The probes thread: runs the `tcp` and `http` checks and reads the sd_notify
sockets of every process, and reports what it sees (CheckDone, Notified). It
decides nothing: when to check, and what a failure or a READY=1 means, is the
policy's (SPEC 6.1; DESIGN.md 7). `exec` checks are processes: the executor
starts them and the reaper reports their end.

One selector for everything, non-blocking sockets, a deadline per check: a
check never blocks another one, nor the worker. A host name is resolved here
(getaddrinfo blocks this thread alone), and kept for a minute.
"""
import errno
import queue
import selectors
import socket
import struct
import time

from .. import procfs
from ..digest import sha256_hex
from ..healthspec import seconds_text
from ..observer import Observer
from .events import CheckDone, Notified
from .health import parse_notification

RESPONSE_KEPT = 4096
MAX_ADDRESS = 107                        # sun_path, less its leading NUL (abstract)
NAMES_KEPT = 60.0
NOTIFICATIONS_PER_TURN = 64              # datagrams read from one socket per wake-up
_CREDENTIALS = struct.Struct('iII')      # pid, uid, gid (struct ucred)


class _Check:
    def __init__(self, name, seq, probe, timeout):
        self.name, self.seq, self.probe, self.timeout = name, seq, probe, timeout
        self.deadline = time.monotonic() + timeout
        self.sock = None
        self.response = b''


class Prober(Observer):
    def __init__(self, post):
        super().__init__('probes', post)
        self._requests = queue.SimpleQueue()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self.wake_r, selectors.EVENT_READ)
        self._checks = {}          # socket -> _Check
        self._listening = {}       # process name -> its notify socket
        self._addresses = {}       # (host, port) -> (family, address, resolved at)

    # ------------------------------------------------------------ other threads

    def check(self, name, seq, probe, timeout):
        self._request(('check', name, seq, probe, timeout))

    def listen(self, name, sock):
        """Read `sock`, process `name`'s notify socket, from now on (it is ours now)."""
        self._request(('listen', name, sock))

    def forget(self, name):
        self._request(('forget', name))

    def _request(self, request):
        self._requests.put(request)
        self.wake()

    # ------------------------------------------------------------ this thread

    def observe(self):
        while not self.stopping:
            timeout = self._nearest_deadline()
            for key, events in self._selector.select(timeout):
                if key.fileobj == self.wake_r:
                    self.read_wakeups()
                    self._take_requests()
                elif key.data == 'notify':
                    self._read_notification(key.fileobj)
                else:
                    self._progress(self._checks.get(key.fileobj), events)
            self._expire(time.monotonic())

    def _nearest_deadline(self):
        if not self._checks:
            return None
        return max(0.0, min(c.deadline for c in self._checks.values()) - time.monotonic())

    def _take_requests(self):
        while True:
            try:
                request = self._requests.get_nowait()
            except queue.Empty:
                return
            getattr(self, '_' + request[0])(*request[1:])

    def _listen(self, name, sock):
        self._forget(name)
        self._listening[name] = sock
        self._selector.register(sock, selectors.EVENT_READ, 'notify')

    def _forget(self, name):
        sock = self._listening.pop(name, None)
        if sock is not None:
            self._selector.unregister(sock)
            sock.close()

    def _check(self, name, seq, probe, timeout):
        check = _Check(name, seq, probe, timeout)
        try:
            family, address = self._address(probe.host, probe.port)
        except Exception as err:    # getaddrinfo raises more than OSError ("a..b":
            # UnicodeError from its IDNA encoding); a host it cannot resolve is a
            # failed check, never a dead thread (and so a dead worker)
            self._done(check, False, _unresolved(probe, err))
            return
        try:
            check.sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK |
                                       socket.SOCK_CLOEXEC)
            code = check.sock.connect_ex(address)
            if code not in (0, errno.EINPROGRESS):
                raise OSError(code, '%s' % errno.errorcode.get(code, code))
        except OSError as err:
            self._done(check, False, _failure(probe, err))
            return
        self._checks[check.sock] = check
        self._selector.register(check.sock, selectors.EVENT_WRITE, 'check')

    def _address(self, host, port):
        known = self._addresses.get((host, port))
        if known is None or time.monotonic() - known[2] > NAMES_KEPT:
            family, _, _, _, address = socket.getaddrinfo(host, port,
                                                          type=socket.SOCK_STREAM)[0]
            known = self._addresses[(host, port)] = (family, address, time.monotonic())
        return known[0], known[1]

    def _progress(self, check, events):
        if check is None:
            return
        try:
            if events & selectors.EVENT_WRITE:
                self._connected(check)
            else:
                self._received(check)
        except OSError as err:
            self._done(check, False, _failure(check.probe, err))

    def _connected(self, check):
        code = check.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            raise OSError(code, errno.errorcode.get(code, str(code)))
        if check.probe.kind == 'tcp':
            self._done(check, True, 'connected')
            return
        host = '[%s]' % check.probe.host if ':' in check.probe.host else check.probe.host
        check.sock.send(('GET %s HTTP/1.0\r\nHost: %s:%d\r\nUser-Agent: diprocd\r\n'
                         'Connection: close\r\n\r\n' % (check.probe.path, host,
                                                        check.probe.port)).encode())
        self._selector.modify(check.sock, selectors.EVENT_READ, 'check')

    def _received(self, check):
        data = check.sock.recv(RESPONSE_KEPT)
        check.response += data
        if b'\n' in check.response or not data or len(check.response) >= RESPONSE_KEPT:
            self._done(check, *_http_verdict(check.response))

    def _expire(self, now):
        for check in [c for c in self._checks.values() if now >= c.deadline]:
            self._done(check, False, 'timeout after %s s' % seconds_text(check.timeout))

    def _done(self, check, passed, detail):
        if check.sock is not None:
            if self._checks.pop(check.sock, None) is not None:
                self._selector.unregister(check.sock)
            check.sock.close()
        self.post(CheckDone(check.name, check.seq, passed, detail))

    def _read_notification(self, sock):
        """At most NOTIFICATIONS_PER_TURN datagrams, then back to the selector, which
        brings us back while more wait: anyone may flood a process's socket (an
        abstract address has no permissions), and reading it dry first would keep
        every other socket, WATCHDOG=1 and check waiting as long as the flood lasts."""
        name = next((n for n, s in self._listening.items() if s is sock), None)
        if name is None:
            return
        for _ in range(NOTIFICATIONS_PER_TURN):
            try:
                data, ancillary, _, _ = sock.recvmsg(4096, socket.CMSG_SPACE(_CREDENTIALS.size))
            except (BlockingIOError, InterruptedError):
                return
            pid = _sender(ancillary)
            if pid:
                self.post(Notified(name, parse_notification(data), pid,
                                   tuple(procfs.ancestors(pid)), procfs.cgroup_of(pid)))


class Notifications:
    """The notify sockets, by process name: bound by the executor before the
    process starts (so its first sd_notify finds it), then read by the prober.
    The address is the same for a name whatever the worker, so the next worker
    binds it again after adoption (what was sent meanwhile is lost; READY=1 was
    recorded in the state file)."""

    def __init__(self, prober, prefix):
        self.prober, self.prefix = prober, prefix
        self.bound = set()

    def address(self, name):
        """The process's NOTIFY_SOCKET: an abstract address (no file: works in a chroot),
        with the name in it when it fits in sun_path (107 bytes), its hash when not."""
        address = '@%s/%s' % (self.prefix, name)
        if len(address.encode()) <= MAX_ADDRESS:
            return address
        return '@%s/#%s' % (self.prefix, sha256_hex(name.encode())[:32])

    def ensure(self, name):
        if name not in self.bound:
            self.prober.listen(name, notify_socket(self.address(name)))
            self.bound.add(name)
        return self.address(name)

    def forget(self, name):
        if name in self.bound:
            self.bound.discard(name)
            self.prober.forget(name)


def notify_socket(address):
    """A datagram socket bound to the abstract `address` ("@..."), passing the
    sender's credentials: the kernel's word for which pid sent each message."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK |
                         socket.SOCK_CLOEXEC)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 18)
        sock.bind('\0' + address[1:])
    except OSError:
        sock.close()
        raise
    return sock


def _sender(ancillary):
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS and \
                len(data) >= _CREDENTIALS.size:
            return _CREDENTIALS.unpack_from(data)[0]
    return None


def _http_verdict(response):
    """(passed, detail) from the start of an HTTP answer: 2xx and 3xx pass."""
    line = response.split(b'\r\n', 1)[0].split(b'\n', 1)[0].decode('latin-1')
    parts = line.split(' ', 2)
    if len(parts) < 2 or not parts[0].startswith('HTTP/') or not parts[1].isdigit():
        return False, 'not an HTTP answer: %r' % line[:80] if line else 'no answer'
    return 200 <= int(parts[1]) < 400, 'HTTP %s' % ' '.join(parts[1:])[:200]


def _unresolved(probe, err):
    if isinstance(err, OSError):
        return _failure(probe, err)         # gaierror: "Name or service not known"...
    return '%s: cannot resolve %s: %s' % (probe.text, probe.host, err)


def _failure(probe, err):
    return '%s: %s' % (probe.text, err.strerror or err) if isinstance(err, OSError) \
        else '%s: %s' % (probe.text, err)

