"""What the client makes of its connections' events (pure, like its policy).

libzmq reconnects a dropped connection by itself, and says so at once with a
"retrying" event (ZMQ_EVENT_CONNECT_RETRIED, when it schedules the attempt) --
except after a protocol error: a frame over MAXMSGSIZE, or garbage on the wire,
ends the session for good, even on the connecting side (research/protocol.md
3.2). Such a socket would stay deaf until the client's 30 s silence rule made it
again; a connection dropped with no reconnect under way is made again within
seconds instead. A failed handshake (keys) is left to the silence rule: it would
fail again at once, and each attempt costs the master a handshake.
"""
DEAD_AFTER = 2.0          # dropped, and no reconnect under way after that long: dead
REBUILD_GAP = 10.0        # at least this long between two such rebuilds
HANDSHAKE_GRACE = 30.0    # after a failed handshake, drops are the silence rule's


class DroppedLinks:
    def __init__(self):
        self.dropped = {}          # socket -> when it was dropped, no reconnect seen since
        self.rebuilt_at = None
        self.failed_at = None      # the last failed handshake

    def on_event(self, event, now):
        kind = event.kind
        if kind == 'disconnected':
            if self.failed_at is None or now - self.failed_at >= HANDSHAKE_GRACE:
                self.dropped.setdefault(event.socket, now)
        elif kind in ('retrying', 'connected', 'handshake-ok'):
            self.dropped.pop(event.socket, None)
        elif kind.startswith('handshake-'):
            self.failed_at = now
            self.dropped.clear()

    def heard(self, socket):
        """A message came on `socket`: it is alive."""
        self.dropped.pop(socket, None)

    def due(self):
        """When to make the sockets again (None: no dead connection)."""
        if not self.dropped:
            return None
        at = min(self.dropped.values()) + DEAD_AFTER
        return at if self.rebuilt_at is None else max(at, self.rebuilt_at + REBUILD_GAP)

    def rebuilt(self, now):
        self.dropped.clear()
        self.rebuilt_at = now


LINK_PROBLEMS = {
    'overloaded': 'the master\'s messages arrive faster than they can be handled on '
                  '%(socket)s: %(detail)s',
    'handshake-protocol': 'the handshake with the master failed on %(socket)s (%(detail)s): '
                          'keys are configured on one side only',
    'handshake-denied': 'the master refused this node\'s key on %(socket)s: is this node\'s '
                        'NODE.key in the master\'s authorized_keys, named after the node?',
    'handshake-failed': 'the handshake with the master failed on %(socket)s (%(detail)s): is '
                        'master_public_key the master\'s key? (or keys are configured on one '
                        'side only)',
}
