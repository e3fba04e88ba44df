"""What the master knows of each node, and when to look at a node again.

Pure, like the policy that owns them. A node's state changes with a message, an
edit, or time alone (a silent node turns `stale`, an unapplied list `lagging`);
`Aging` re-reads only the nodes a message or an edit touched since its last look,
and those whose time-driven change is due (a deadline heap, one entry per node),
not every node every second.
"""
import heapq

from ..record import Record
from . import protocol
from .protocol import REPORT_IVL, stale_after

STALE_AFTER = stale_after(REPORT_IVL)  # no report for that long: the node is stale
PENDING_GRACE = 30.0                  # a newer list unapplied for longer: lagging


class Desired(Record):
    gen: int
    sha256: str
    body: bytes
    count: int

    @property
    def view(self):
        """What the cluster view shows of it (made once: the same object each time)."""
        view = self.__dict__.get('_view')
        if view is None:
            view = self.__dict__['_view'] = {'gen': self.gen, 'sha256': self.sha256,
                                             'processes': self.count}
        return view

    @property
    def saved(self):
        """As a restarted master reads it back (resume.py)."""
        return {'gen': self.gen, 'sha256': self.sha256, 'body': self.body.decode(),
                'count': self.count}


class Node:
    def __init__(self, name):
        self.name = name
        self.managed = False
        self.desired = None           # the list it is served, or None
        self.target = None            # the master file's last valid list (staged.py)
        self.kept = None              # the list it keeps while a rollout holds it
        self.held = False             # a rollout holds it (waiting, or reverted)
        self.errors = ()              # why the master file's list is invalid
        self.changed_at = None        # when `desired` last changed
        self.seen_at = None
        self.applied = None           # {gen, sha256} the node reported
        self.last_rejected = None
        self.report = {}              # the last REPORT's worker and processes
        self.peers = {}               # boot -> (seen_at, version): who claims to be this node
        self.notified_at = None
        self.listens = False          # subscribed to its NOTIFYs (a first-round client)
        self.last_error = None
        self.routing_id = None        # the connection its last message came on
        self.record = None            # its entry of the cluster view, until it changes
        self.aging_at = None          # its entry in Aging's heap
        self._replies = {}            # kind -> (version, frames): an ACK or STATE made once
        self.stale_after = STALE_AFTER  # as the report interval its last ACK gave it

    def state(self, now):
        if not self.managed:
            return 'unmanaged'
        if self.seen_at is None:
            return 'never-seen'
        if now - self.seen_at > self.stale_after:
            return 'stale'
        if self.held:
            return 'held'
        if self.desired is None:
            return 'rejected'
        if self.applied and self.applied.get('sha256') == self.desired.sha256:
            return 'in-sync'
        rejected = self.last_rejected or {}
        if rejected.get('sha256') == self.desired.sha256:
            return 'rejected'
        return 'pending' if now - self.changed_at < PENDING_GRACE else 'lagging'

    def changes_at(self, now):
        """When time alone may next change its state, from `now` on (None: only a
        message or an edit can): it turns stale, or its pending list lagging."""
        if not self.managed or self.seen_at is None:
            return None
        times = [self.seen_at + self.stale_after]
        if self.changed_at is not None:
            times.append(self.changed_at + PENDING_GRACE)
        future = [when for when in times if when >= now]
        return min(future) if future else None

    def view(self, state):
        """Its entry of the cluster view (never changed once made: see `record`)."""
        desired = self.desired
        return {
            'node': self.name, 'state': state, 'managed': self.managed,
            'desired': desired and desired.view,
            'applied': self.applied, 'last_rejected': self.last_rejected,
            'errors': list(self.errors), 'seen_at': self.seen_at,
            'clients': len(self.peers), 'client_version': _newest_version(self.peers),
            'worker': self.report.get('worker'), 'processes': self.report.get('processes'),
            'reason': self.report.get('reason'),
        }

    def reply(self, kind, epoch, report_ivl=REPORT_IVL):
        """The frames of an ACK or a STATE of its desired list, made once per version:
        a thousand nodes report every 10 s and are answered the same ACK each time.
        An ACK tells the node how often to report: from then on, it is stale after
        three of those intervals."""
        desired = self.desired
        version = (desired.gen, desired.sha256, epoch, report_ivl)
        made = self._replies.get(kind)
        if kind == 'ACK':
            self.stale_after = stale_after(report_ivl)
        if made is None or made[0] != version:
            if kind == 'ACK':
                frames = protocol.ack(self.name, desired.gen, desired.sha256, epoch, report_ivl)
            else:
                frames = protocol.state(self.name, desired.gen, desired.sha256, desired.body,
                                        epoch)
            made = self._replies[kind] = (version, tuple(frames))
        return made[1]


def same(old, new):
    """`old` when equal to `new`: a value kept as the same object keeps its text in
    the state file (the state encoder reuses it)."""
    return old if old == new else new


def kept_report(fields):
    """What the master keeps of a checked REPORT: the known fields, nothing more."""
    processes = fields.get('processes')
    return {'worker': protocol.kept(fields.get('worker'), protocol.WORKER),
            'processes': None if processes is None else
            [protocol.kept_process(p) for p in processes],
            'reason': fields.get('reason')}


def _newest_version(peers):
    versions = [v for _, v in peers.values() if v]
    return versions[-1] if versions else None


class Aging:
    """The nodes whose state may have changed since the last look."""

    def __init__(self):
        self.touched = set()          # names changed by a message or an edit
        self._heap = []               # (when, name): a time-driven change due then

    def touch(self, node):
        self.touched.add(node.name)

    def due(self, now, nodes):
        """The nodes to read again now: touched, or with a change due by `now`."""
        names, self.touched = self.touched, set()
        heap = self._heap
        while heap and heap[0][0] <= now:
            when, name = heapq.heappop(heap)
            node = nodes.get(name)
            if node is not None and node.aging_at == when:
                node.aging_at = None
                names.add(name)
        return [nodes[name] for name in names if name in nodes]

    def schedule(self, node, now):
        """After a look: when to look at `node` again (an earlier entry stays and
        asks again when it comes: a report moves the stale deadline every 10 s,
        and the heap keeps one entry per node)."""
        when = node.changes_at(now)
        if when is not None and (node.aging_at is None or when < node.aging_at):
            node.aging_at = when
            heapq.heappush(self._heap, (when, node.name))
