"""The zmq thread: the only thread that touches ZeroMQ sockets.

It creates its sockets itself (a socket belongs to one thread), waits on them
and on a wake-up pipe in one poller, and reports what arrives as facts:
LinkMessage (frames, and the ZAP User-Id that names the peer), LinkEvent
(connected, handshake failed...). Other threads hand it frames to send with
`send()`; sends never block (a full queue drops: the protocol repairs loss).

With keys, it also answers ZAP (RFC 27) itself, from a REP socket bound
before any CURVE server socket: a node's public key maps to its node name,
which becomes the User-Id of everything that node sends. ZAP_ENFORCE_DOMAIN
makes a missing handler fail closed.
"""
import logging
import queue
import struct
import threading
import time

import zmq
from zmq.utils import z85

from ..observer import Observer
from ..record import Record
from .events import LinkEvent, LinkMessage

ZAP_ENDPOINT = 'inproc://zeromq.zap.01'
ZAP_DOMAIN = b'diprocd'
MONITORED = (zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED |
             zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL |
             zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_CONNECT_RETRIED)
EVENT_NAMES = {zmq.EVENT_CONNECTED: 'connected', zmq.EVENT_DISCONNECTED: 'disconnected',
               zmq.EVENT_CONNECT_RETRIED: 'retrying',
               zmq.EVENT_HANDSHAKE_SUCCEEDED: 'handshake-ok',
               zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: 'handshake-failed',
               zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: 'handshake-protocol',
               zmq.EVENT_HANDSHAKE_FAILED_AUTH: 'handshake-denied'}
MONITOR_HEAD = struct.Struct('=Hi')   # a monitor message's event id and value
RECV_BATCH = 256       # messages taken from one socket before looking at the others...
RECV_BATCH_BYTES = 4 * 1024 * 1024   # ...or this many bytes: the inbox's budget judges a
                                     # batch only once it is taken in, so a batch of big
                                     # messages must stay small (256 x 2 MiB: 512 MiB)
MAX_FRAMES = 8         # a message's frames kept (the protocol's have 5 at most, with the
                       # ROUTER's id): a peer may send millions, 2 bytes each on the wire
FRAME_COST = 64        # what a frame costs however small (libzmq's msg_t), in the budget
DISCARD_BATCH = 4096   # frames past MAX_FRAMES dropped per round, the other sockets served
NOBLOCK, MORE_NOBLOCK = int(zmq.NOBLOCK), int(zmq.NOBLOCK | zmq.SNDMORE)
EVENTS, POLLIN, RCVMORE = int(zmq.EVENTS), int(zmq.POLLIN), int(zmq.RCVMORE)

log = logging.getLogger('dpd.link')


class Curve(Record):
    """This end's keys (z85 bytes); `server_key` pins the master on a client."""
    public: bytes
    secret: bytes
    server_key: bytes = None


class SocketPlan(Record):
    name: str
    kind: int
    endpoint: str
    bind: bool
    options: tuple = ()             # (option, value) pairs, set before bind/connect
    curve: Curve = None


class _Live:
    """A socket made from its plan, and its monitor."""

    def __init__(self, plan, socket, monitor=None):
        self.plan, self.socket, self.monitor = plan, socket, monitor
        self.discarding = False     # the rest of a message of too many frames is dropped


class ZmqLink(Observer):
    def __init__(self, inbox, plans, zap_keys=None):
        super().__init__('zmq', inbox.put)
        self.offer_all = inbox.offer_all    # what peers send is offered, within a budget
        self.refused, self.refused_reported_at = 0, 0.0
        self.plans = tuple(plans)
        self.zap_keys = zap_keys            # z85 public key -> node name; None: no ZAP
        self._outbox = queue.SimpleQueue()
        self._wake_pending = False      # a byte is in the pipe: no need for another
        self._rebuild = False
        self._ready = threading.Event()
        self.error = None
        self.dropped = 0

    # ------------------------------------------------------------ other threads

    def wait_ready(self, timeout=10.0):
        """Block until the sockets are bound/connected; raise their error if any."""
        if not self._ready.wait(timeout):
            raise OSError('the zmq thread did not start within %g s' % timeout)
        if self.error is not None:
            raise self.error

    def send(self, name, frames, fallback=None):
        """Queue `frames` for socket `name`; should they not go (a ROUTER's peer gone,
        a full queue), `fallback` (name, frames) goes instead, if given."""
        self.send_all([(name, frames, fallback)])

    def send_all(self, messages):
        """`send` for each (name, frames, fallback) of `messages`, with one wake-up."""
        self._outbox.put(messages)
        self.wake()

    def rebuild(self):
        """Close and re-create every socket (after long silence: a wedged connection)."""
        self._rebuild = True
        self.wake()

    def set_keys(self, zap_keys):
        self.zap_keys = zap_keys            # one reference swap: read by this thread only

    def wake(self):
        """One write per batch of sends, not one per message (the master answers a
        thousand nodes at once). The flag is cleared before the outbox is drained,
        so a message queued behind a skipped write is always drained."""
        if self._wake_pending:
            return
        self._wake_pending = True
        super().wake()

    # ------------------------------------------------------------ this thread

    def observe(self):
        context = zmq.Context()
        zap, live = None, {}
        try:
            try:
                zap = self._zap_socket(context)
                live = self._open_all(context)
            except zmq.ZMQError as err:
                self.error = OSError(err.errno, str(err))
                return
            finally:
                self._ready.set()
            self._serve(context, zap, live)
        finally:
            self._close_all(live)
            if zap is not None:
                zap.close(0)
            context.term()

    def _zap_socket(self, context):
        if self.zap_keys is None:
            return None
        zap = context.socket(zmq.REP)
        zap.linger = 0
        zap.bind(ZAP_ENDPOINT)
        return zap

    def _open_all(self, context):
        live = {}
        try:
            for plan in self.plans:
                live[plan.name] = self._open(context, plan)
        except BaseException:
            self._close_all(live)
            raise
        return live

    @staticmethod
    def _open(context, plan):
        sock = context.socket(plan.kind)
        sock.linger = 0
        for option, value in plan.options:
            sock.setsockopt(option, value)
        if plan.curve is not None:
            sock.curve_publickey, sock.curve_secretkey = plan.curve.public, plan.curve.secret
            if plan.curve.server_key is None:
                sock.curve_server = True
                sock.zap_domain = ZAP_DOMAIN
                sock.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)
            else:
                sock.curve_serverkey = plan.curve.server_key
        monitor = sock.get_monitor_socket(MONITORED)
        try:
            (sock.bind if plan.bind else sock.connect)(plan.endpoint)
        except BaseException:
            monitor.close(0)
            sock.close(0)
            raise
        return _Live(plan, sock, monitor)

    @staticmethod
    def _close_all(live):
        for item in live.values():
            item.socket.disable_monitor()
            item.monitor.close(0)
            item.socket.close(0)
        live.clear()

    def _serve(self, context, zap, live):
        poller, owners = self._poller(zap, live)
        while not self.stopping:
            offers = []
            for sock, _ in poller.poll():
                owner = owners.get(sock)
                if sock == self.wake_r:
                    self._drain_wakeups()
                elif sock is zap:
                    self._answer_zap(zap)
                elif owner is not None and sock is owner.monitor:
                    self._report_event(owner)
                elif owner is not None:
                    self._receive(owner, offers)
            if offers:
                dropped = self.offer_all(offers)
                if dropped:
                    self._refused(dropped, ' and '.join(sorted({f.socket for f, _ in offers})))
            self._flush_outbox(live)
            if self._rebuild:
                self._rebuild = False
                self._close_all(live)
                live.update(self._open_all(context))
                poller, owners = self._poller(zap, live)
                self.post(LinkEvent('*', 'rebuilt', ''))

    def _poller(self, zap, live):
        poller, owners = zmq.Poller(), {}
        poller.register(self.wake_r, zmq.POLLIN)
        if zap is not None:
            poller.register(zap, zmq.POLLIN)
        for item in live.values():
            poller.register(item.socket, zmq.POLLIN)
            poller.register(item.monitor, zmq.POLLIN)
            owners[item.socket] = owners[item.monitor] = item
        return poller, owners

    def _drain_wakeups(self):
        self.read_wakeups()
        # after the read (a byte written after it stays for the next poll), and
        # before _flush_outbox, which follows: no queued message is left behind
        self._wake_pending = False

    def _receive(self, item, offers):
        """Up to RECV_BATCH messages of one socket, added to `offers` as (fact, size).
        ZMQ_EVENTS says whether one is there: no zmq.Again raised at the end of each
        drain, and plain int flags (pyzmq's enum flags cost more than the call)."""
        sock, name = item.socket, item.plan.name
        recv, get = sock.recv, sock.getsockopt
        # the ZAP User-Id lives on a Frame; without keys, plain bytes are cheaper
        copy = item.plan.curve is None
        taken = 0
        for _ in range(RECV_BATCH):
            if item.discarding and not _discard(item):
                return
            if taken >= RECV_BATCH_BYTES or not get(EVENTS) & POLLIN:
                return
            try:
                frames = [recv(NOBLOCK, copy)]
                while get(RCVMORE) and not item.discarding:
                    frames.append(recv(NOBLOCK, copy))
                    item.discarding = len(frames) == MAX_FRAMES and bool(get(RCVMORE))
            except zmq.Again:
                return
            if copy:
                user_id = None
            else:
                user_id, frames = _user_id(frames[-1]), [f.bytes for f in frames]
            size = FRAME_COST * len(frames)
            for frame in frames:
                size += len(frame)
            taken += size
            # (a message cut short is still offered: its frame count is wrong, and
            # the protocol's check says so in the log)
            offers.append((LinkMessage(name, tuple(frames), user_id), size))

    def _refused(self, count, socket_name):
        """Messages dropped for lack of room: say so, at most once a second."""
        self.refused += count
        now = time.monotonic()
        if now - self.refused_reported_at >= 1.0:
            self.refused_reported_at = now
            self.post(LinkEvent(socket_name, 'overloaded', '%d messages dropped so far: more '
                                'arrive than can be handled' % self.refused))

    def _report_event(self, item):
        try:
            frames = item.monitor.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return
        event = monitor_event(frames)
        name = EVENT_NAMES.get(event and event[0])
        if name is not None:
            self.post(LinkEvent(item.plan.name, name, '%s %s' % (event[2], event[1])))

    def _flush_outbox(self, live):
        while True:
            try:
                messages = self._outbox.get_nowait()
            except queue.Empty:
                return
            for name, frames, fallback in messages:
                if not self._send_now(live, name, frames) and fallback is not None:
                    self._send_now(live, *fallback)

    def _send_now(self, live, name, frames):
        item = live.get(name)
        if item is None:
            return False
        send = item.socket.send
        try:
            # a multipart message is all or nothing: only its first frame can fail
            for frame in frames[:-1]:
                send(frame, MORE_NOBLOCK)
            send(frames[-1], NOBLOCK)
            return True
        except zmq.ZMQError:
            self.dropped += 1   # unreachable peer or full queue: the protocol repairs it
            return False

    def _answer_zap(self, zap):
        request = zap.recv_multipart()
        if len(request) < 6:
            return  # RFC 27 needs at least 6 frames; nothing sensible to answer
        version, request_id, domain, address, _, mechanism = request[:6]
        credentials = request[6:]
        node, key = None, None
        if mechanism == b'CURVE' and len(credentials) == 1 and len(credentials[0]) == 32:
            key = z85.encode(credentials[0])
            node = (self.zap_keys or {}).get(key)
        if domain == ZAP_DOMAIN and node is not None:
            zap.send_multipart([version, request_id, b'200', b'OK', node.encode(), b''])
            return
        zap.send_multipart([version, request_id, b'400', b'unknown key', b'', b''])
        self.post(LinkEvent('zap', 'denied', 'address %s, mechanism %s, public key %s' % (
            address.decode(errors='replace'), mechanism.decode(errors='replace'),
            key.decode() if key else '-')))


def monitor_event(frames):
    """(event, value, endpoint) from a monitor message, None if malformed: frame 1
    is a 16-bit event id and a 32-bit value, frame 2 the endpoint. (pyzmq's own
    parser imports asyncio, a fifth of the daemon's start-up.)"""
    if len(frames) != 2 or len(frames[0]) != MONITOR_HEAD.size:
        return None
    event, value = MONITOR_HEAD.unpack(frames[0])
    return event, value, frames[1].decode(errors='replace')


def _discard(item):
    """Drop up to DISCARD_BATCH more frames of a message of too many; True once its
    last one is gone (ZeroMQ delivers a message whole: its frames are all here)."""
    recv, get = item.socket.recv, item.socket.getsockopt
    try:
        for _ in range(DISCARD_BATCH):
            recv(NOBLOCK, False)
            if not get(RCVMORE):
                item.discarding = False
                return True
    except zmq.Again:
        pass
    return False


def _user_id(frame):
    try:
        return frame.get('User-Id')
    except (zmq.ZMQError, AttributeError):
        return None
