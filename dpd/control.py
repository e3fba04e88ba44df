"""The control socket: operators' requests in, answers out (SPEC 6.3).

A Unix stream socket beside the daemon's state file, usable only by root,
the daemon's own user and its config file's owner: the socket file belongs
to the one of them who is not root (mode 0600; 0666 only when both the
daemon's user and the owner are not root and differ), and the kernel's word
on each peer (SO_PEERCRED) is checked at every connection. One request per
connection: a JSON object on one line (at most MAX_REQUEST bytes, within
REQUEST_SECONDS). Answers are JSON lines; a request may get several (log
lines), the last one says `"done": true`.

This thread decides nothing: it posts CommandReceived (and CommandGone when
the peer hangs up), and writes what the executor hands it: answers, and the
lines of a log file it is asked to stream. What waits for a peer to read it
is bounded as what it asks is: a peer that leaves more than MAX_PENDING of
answers unread (a relay's node sends faster than dpd-ctl reads) has its
connection ended, as a request too large is refused, and posted as gone.
"""
import errno
import logging
import os
import queue
import selectors
import socket
import stat
import struct
import time

from . import jsonfile
from .acceptpause import AcceptPause
from .config import daemon_files
from .events import CommandGone, CommandReceived
from .observer import Observer
from .tail import Follower, last_lines, open_plain

MAX_REQUEST = 64 * 1024
REQUEST_SECONDS = 5.0
MAX_CONNECTIONS = 64
STREAM_BYTES_PER_SECOND = 1 << 20      # log lines sent on, at most (SPEC 6.3)
STREAM_PIECE = 64 << 10                 # the most log text in one answer (bytes read, or
                                        # characters of a backlog: 768 KiB as JSON at most)
STREAM_BURST = 2 * STREAM_PIECE         # sent at once, at most: a relay's client drops what
                                        # its queue to the master (10 messages) cannot hold
MAX_PENDING = 4 << 20                   # answers waiting for their reader, at most
_CREDENTIALS = struct.Struct('iII')
SUN_PATH_MAX = 108                      # sizeof(sockaddr_un.sun_path) on Linux
_BOUND = 's'                            # the socket's name in its private directory
log = logging.getLogger('dpd')


class _Connection:
    def __init__(self, sock, number, uid):
        self.sock, self.number, self.uid = sock, number, uid
        self.inbox, self.outbox = b'', bytearray()     # (bytes += would copy it all)
        self.asked = False                      # the request is read
        self.closing = False                    # close once the outbox is sent
        self.deadline = time.monotonic() + REQUEST_SECONDS
        self.follower = None                    # a log followed for it (tail.Follower)
        self.backlog, self.backlog_at = '', None    # a log's last lines, and where the
                                                    # next piece starts (None: all sent)
        self.backlog_ends = False               # its last piece is the last answer
        self.rate = ByteRate(STREAM_BYTES_PER_SECOND, STREAM_BURST)
        self.resume_at = None                   # send the log's next piece then


class ByteRate:
    """A budget of `rate` bytes a second, at most `burst` bytes (a second's worth)
    saved up."""

    def __init__(self, rate, burst=None):
        self.rate, self.at = rate, time.monotonic()
        self.burst = self.tokens = float(burst or rate)

    def available(self, now):
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        return int(self.tokens)

    def spend(self, count):
        self.tokens -= count

    def when(self, count, now):
        """When `count` bytes will be available (now, if they are)."""
        return now + max(0.0, count - self.tokens) / self.rate


def socket_path(state_file):
    """CONFIG.sock beside CONFIG.state.json: where a daemon's control socket is."""
    base = state_file[:-len('.state.json')] if state_file.endswith('.state.json') else state_file
    return base + '.sock'


def socket_of(config_path):
    """The control socket of the daemon of `config_path` (its state file's name,
    read leniently as dpd-ctl does)."""
    return socket_path(daemon_files(config_path)[1])


def config_owner(config_path):
    """The uid owning the config file now (None if it cannot be read)."""
    try:
        return os.stat(config_path).st_uid
    except OSError:
        return None


def open_control(config, post):
    """The daemon's ControlServer for `config`, or None (said in the log): a daemon
    without its control socket still does its job."""
    path = socket_path(config.state_file)
    try:
        return ControlServer(path, post, config.path)
    except OSError as err:
        log.error('no control socket (dpd-ctl restart, signal, logs): %s: %s',
                  path, err.strerror or err)
        return None


class ControlServer(Observer):
    """`config_path`'s owner may use it (checked again at each connection: the
    owner may change), as may root and the daemon's own user."""

    def __init__(self, path, post, config_path):
        super().__init__('control', post)
        self.path, self.config_path = path, config_path
        self._listener = _listen(path, self._allowed())
        self._selector = selectors.DefaultSelector()
        self._selector.register(self.wake_r, selectors.EVENT_READ)
        self._selector.register(self._listener, selectors.EVENT_READ, 'listen')
        self._pause = AcceptPause(self._selector, self._listener, 'listen',
                                  'control connections')
        self._connections = {}                  # number -> _Connection
        self._numbers = iter(range(1, 1 << 62))
        self._orders = queue.SimpleQueue()

    # ------------------------------------------------------------ other threads

    def answer(self, number, message, done=True):
        self._order(('answer', number, message, done))

    def stream(self, number, path, lines, follow, opener=open_plain):
        """Send the last `lines` of `path`, then (with `follow`) what is appended;
        `opener(path)` opens it (again after a rotation)."""
        self._order(('stream', number, path, lines, follow, opener))

    def _order(self, order):
        self._orders.put(order)
        self.wake()

    def stop(self, timeout=5.0):
        super().stop(timeout)
        for connection in list(self._connections.values()):
            self._close(connection)
        self._listener.close()
        try:
            _remove_socket(self.path)
        except OSError:
            pass

    # ------------------------------------------------------------ this thread

    def observe(self):
        while not self.stopping:
            for key, events in self._selector.select(self._next_deadline()):
                if key.fileobj == self.wake_r:
                    self.read_wakeups()
                    self._take_orders()
                elif key.data == 'listen':
                    self._accept()
                elif isinstance(key.data, _Connection):
                    self._serve_safely(key.data, events)
                else:                                   # a followed log file grew
                    self._forward(self._connections.get(key.data), time.monotonic())
            self._expire(time.monotonic())

    def _allowed(self):
        return {0, os.geteuid(), config_owner(self.config_path)} - {None}

    def _next_deadline(self):
        deadlines = [c.deadline if not c.asked else c.resume_at
                     for c in self._connections.values()] + [self._pause.until]
        deadlines = [d for d in deadlines if d is not None]
        return max(0.0, min(deadlines) - time.monotonic()) if deadlines else None

    def _accept(self):
        try:
            sock, _ = self._listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as err:              # out of descriptors, and the like
            self._pause.rest(err)
            return
        sock.setblocking(False)
        uid = _peer_uid(sock)
        allowed = uid in self._allowed()
        if not allowed or len(self._connections) >= MAX_CONNECTIONS:
            _refuse(sock, 'uid %d may not use %s' % (uid, self.path) if not allowed
                    else 'too many connections')
            return
        connection = _Connection(sock, next(self._numbers), uid)
        self._connections[connection.number] = connection
        self._selector.register(sock, selectors.EVENT_READ, connection)

    def _serve_safely(self, connection, events):
        """One peer's trouble ends its connection, never the thread."""
        try:
            self._serve(connection, events)
        except (OSError, ValueError) as err:
            if connection.number in self._connections:
                self._close(connection, gone=True)
            log.warning('control connection %d: %s', connection.number, err)

    def _serve(self, connection, events):
        if events & selectors.EVENT_WRITE:
            self._flush(connection)
        if events & selectors.EVENT_READ and connection.number in self._connections:
            self._receive(connection)

    def _receive(self, connection):
        try:
            data = connection.sock.recv(MAX_REQUEST)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b''
        if not data:
            self._close(connection, gone=True)
            return
        if connection.asked:
            return                                   # one request per connection
        connection.inbox += data
        if b'\n' in connection.inbox:
            self._asked(connection, connection.inbox.split(b'\n', 1)[0])
        elif len(connection.inbox) > MAX_REQUEST:
            self._reject(connection, 'request too large')

    def _asked(self, connection, line):
        connection.asked = True
        try:
            request = jsonfile.loads(line)
        except ValueError as err:
            self._reject(connection, 'not a JSON request: %s' % err)
            return
        if not isinstance(request, dict):
            self._reject(connection, 'not a JSON object')
            return
        self.post(CommandReceived(connection.number, request, connection.uid))

    def _reject(self, connection, error):
        connection.asked = True
        self._send(connection, {'ok': False, 'code': 2, 'error': error}, done=True)

    def _expire(self, now):
        """Requests that did not come in time; streams whose next piece is due; the
        listener back once its rest is over."""
        self._pause.resume_if_due(now)
        for connection in list(self._connections.values()):
            if not connection.asked and now >= connection.deadline:
                self._reject(connection, 'no request within %g s' % REQUEST_SECONDS)
            elif connection.resume_at is not None and now >= connection.resume_at:
                connection.resume_at = None
                self._forward(connection, now)

    # ------------------------------------------------------------ answers, streams

    def _take_orders(self):
        while True:
            try:
                kind, number, *rest = self._orders.get_nowait()
            except queue.Empty:
                return
            connection = self._connections.get(number)
            if connection is None:
                continue                                # the peer hung up meanwhile
            if kind == 'answer':
                self._answer(connection, *rest)
            else:
                self._start_stream(connection, *rest)

    def _answer(self, connection, message, done):
        """An answer the executor hands over. A relay's (`dpd-ctl --node`) come as
        fast as the node sends them, whatever the reader takes: those a slow reader
        (a pager) leaves unread would pile up here without end. Beyond MAX_PENDING,
        the connection is ended with an error after what it holds, and posted as
        gone (the master's policy then cancels the relay). A last answer always
        goes: one more, at most."""
        if connection.closing:
            return                      # answered in full, or ended: nothing more goes
        line = _line(message, done)
        if done or len(connection.outbox) + len(line) <= MAX_PENDING:
            self._queue(connection, line, done)
            return
        log.warning('control connection %d: answers come faster than its reader takes '
                    'them (%d MiB wait): ended', connection.number, MAX_PENDING >> 20)
        self._send(connection, {'ok': False, 'code': 1, 'error': (
            'answers came faster than dpd-ctl read them (%d MiB waited to be read): stopped'
            % (MAX_PENDING >> 20))}, done=True)
        self.post(CommandGone(connection.number))

    def _send(self, connection, message, done):
        self._queue(connection, _line(message, done), done)

    def _queue(self, connection, data, done):
        connection.outbox += data
        connection.closing = connection.closing or done
        self._flush(connection)

    def _flush(self, connection):
        try:
            sent = connection.sock.send(connection.outbox) if connection.outbox else 0
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._close(connection, gone=True)
            return
        del connection.outbox[:sent]                    # (a bytearray's start just moves)
        if not connection.outbox and connection.closing:
            self._close(connection)
            return
        if not connection.outbox and (connection.follower is not None or
                                      connection.backlog_at is not None):
            connection.resume_at = time.monotonic()     # the next piece may go
        wanted = selectors.EVENT_READ | (selectors.EVENT_WRITE if connection.outbox else 0)
        self._selector.modify(connection.sock, wanted, connection)

    def _start_stream(self, connection, path, lines, follow, opener):
        try:
            if follow:
                connection.follower = Follower(path, opener)
                self._selector.register(connection.follower.fd, selectors.EVENT_READ,
                                        connection.number)
                text = connection.follower.backlog(lines)
            else:
                text = last_lines(path, lines, opener=opener)
        except OSError as err:
            self._send(connection, {'ok': False, 'code': 1, 'error': '%s: %s' % (
                path, err.strerror or err)}, done=True)
            return
        connection.backlog, connection.backlog_at = _text(text), 0
        connection.backlog_ends = not follow
        self._forward(connection, time.monotonic())

    def _forward(self, connection, now):
        """A log on to the peer: its last lines, then (followed) what is appended,
        a piece at a time, at most STREAM_BYTES_PER_SECOND, and only once the last
        piece is sent (a slow reader leaves the rest in the file, not in our
        memory). A backlog of 16 MiB in one line was more than its readers take
        (4 MiB a line; the master, 1 MiB an ANSWER); in pieces all at once, more
        than the client's queue to the master holds (it drops what does not fit)."""
        if connection is None:
            return
        if connection.follower is not None:
            connection.follower.discard_events()
        if connection.outbox:
            return                              # _flush resumes once it is sent
        if connection.backlog_at is not None:
            self._forward_backlog(connection, now)
        elif connection.follower is not None:
            self._forward_appended(connection, now)

    def _forward_backlog(self, connection, now):
        """The backlog's next piece of STREAM_PIECE characters (the rate counts them
        as bytes read), `done` on the last unless the log is followed."""
        at = connection.backlog_at
        piece = connection.backlog[at:at + STREAM_PIECE]
        if connection.rate.available(now) < len(piece):
            connection.resume_at = connection.rate.when(len(piece), now)
            return
        connection.rate.spend(len(piece))
        last = at + len(piece) >= len(connection.backlog)
        connection.backlog_at = None if last else at + len(piece)
        if last:
            connection.backlog = ''
        self._send(connection, _log_text(piece), done=last and connection.backlog_ends)

    def _forward_appended(self, connection, now):
        allowance = min(STREAM_PIECE, connection.rate.available(now))
        data = connection.follower.read(allowance) if allowance else b''
        connection.rate.spend(len(data))
        # the piece was full: there may be more, read it when the rate allows
        connection.resume_at = connection.rate.when(STREAM_PIECE, now) \
            if len(data) >= allowance else None
        if data:
            self._send(connection, _log_text(_text(data)), done=False)

    def _close(self, connection, gone=False):
        self._connections.pop(connection.number, None)
        self._selector.unregister(connection.sock)
        connection.sock.close()
        if connection.follower is not None:
            self._selector.unregister(connection.follower.fd)
            connection.follower.close()
        if gone:
            self.post(CommandGone(connection.number))


def _listen(path, allowed):
    """The listening socket at `path`: a stale socket there is replaced; anything
    else is an error (never unlink what is not a socket).

    `path`'s directory may be writable by the config's owner, who could put a
    symbolic link in place of the new socket between bind() and a chown by name
    (root would then chown the link's target). So nothing is done by that name:
    the socket is bound, given its owner and mode in a private directory beside
    it, where no one else can reach, then renamed into place (a rename replaces
    a link, never follows it)."""
    _remove_socket(path)
    if len(os.fsencode(path)) > SUN_PATH_MAX:
        raise OSError('AF_UNIX path too long')     # dpd-ctl could not connect to it
    parent, name = os.path.split(path)
    directory = os.open(parent or '.', os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        private_name, private = _private_directory(directory)
        try:
            return _bound_into_place(private, directory, name, allowed)
        finally:
            os.close(private)
            try:
                os.rmdir(private_name, dir_fd=directory)
            except OSError:
                pass                    # moved away by the directory's owner: empty, harmless
    finally:
        os.close(directory)


def _private_directory(directory):
    """(name, fd) of a fresh directory in `directory` that is ours alone (mode
    0700): made under a random name, opened without following a link, and checked
    to be ours, since the parent's owner may swap it for their own meanwhile."""
    for _ in range(100):
        name = '.dpd-sock-' + os.urandom(8).hex()
        try:
            os.mkdir(name, 0o700, dir_fd=directory)
            break
        except FileExistsError:
            continue                    # planted (or a rare clash): another name
    else:
        raise OSError(errno.EEXIST, 'no private directory could be made')
    fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                 dir_fd=directory)
    info = os.fstat(fd)
    if info.st_uid != os.geteuid():
        os.close(fd)
        raise OSError(errno.EPERM, 'the private directory %s was replaced' % name)
    os.fchmod(fd, 0o700)                # our umask may have taken our own search bit
    return name, fd


def _bound_into_place(private, directory, name, allowed):
    """A listening socket bound in `private` (by its fd), given its owner and
    mode there, then renamed to `name` in `directory`."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK |
                         socket.SOCK_CLOEXEC)
    try:
        old = os.umask(0o177)
        try:
            sock.bind('/proc/self/fd/%d/%s' % (private, _BOUND))   # short: fits sun_path
        finally:
            os.umask(old)
        users = allowed - {0}
        if os.geteuid() == 0 and len(users) == 1:
            os.chown(_BOUND, next(iter(users)), -1, dir_fd=private, follow_symlinks=False)
        # by name, but in a directory only we can write: nothing there is a link
        os.chmod(_BOUND, 0o600 if len(users) <= 1 else 0o666, dir_fd=private)
        sock.listen(16)
        os.rename(_BOUND, name, src_dir_fd=private, dst_dir_fd=directory)
    except BaseException:
        sock.close()
        try:
            os.unlink(_BOUND, dir_fd=private)   # so that the directory can go
        except OSError:
            pass
        raise
    return sock


def _remove_socket(path):
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise OSError(errno.EEXIST, '%s exists and is not a socket' % path)
    os.unlink(path)


def _peer_uid(sock):
    data = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CREDENTIALS.size)
    return _CREDENTIALS.unpack(data)[1]


def _text(data):
    return data.decode('utf-8', 'replace')


def _log_text(text):
    return {'ok': True, 'code': 0, 'text': text}


def _line(message, done):
    return (jsonfile.dumps(dict(message, done=done)) + '\n').encode()


def _refuse(sock, error):
    try:
        sock.send((jsonfile.dumps({'ok': False, 'code': 1, 'error': error, 'done': True}) +
                   '\n').encode())
    except OSError:
        pass
    sock.close()
