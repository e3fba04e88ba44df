"""What the master knows of each node, and when to look at a node again.

Pure, like the policy that owns them. A node's state changes with a message, an
edit, or time alone (a silent node turns `stale`, an unapplied list `lagging`);
`Aging` re-reads only the nodes a message or an edit touched since its last look,
and those whose time-driven change is due (a deadline heap, one entry per node),
not every node every second.
"""
import heapq
from json.encoder import encode_basestring_ascii

from .. import jsonfile
from ..record import Record
from . import protocol
from .protocol import REPORT_IVL, stale_after

STALE_AFTER = stale_after(REPORT_IVL)  # no report for that long: the node is stale
PENDING_GRACE = 30.0                  # a newer list unapplied for longer: lagging

# What the nodes' reports may take of the master's state file, together: its
# readers stop at 64 MiB (state.MAX_STATE_BYTES), and without keys anyone may
# report for every node, up to 1 MiB each (SPEC 5.2). In bytes of the file.
REPORTS_BYTES = 24 * 1024 * 1024      # every node's report, together
REPORTS_SHARES = 4 * 1024 * 1024      # of which each node may always have its share
MIN_SHARE = 1024                      # (a share is never less, whatever the fleet)
SHORT_TEXT = 160                      # a report that does not fit: its texts clipped...
SHORT_ITEMS = 2                       # ...its lists (waiting_for, errors) to their first


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
        self.report_bytes = 0         # at most what it and last_rejected take (Reports)
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
            'processes_more': self.report.get('more', 0), 'reason': self.report.get('reason'),
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
    """What the master keeps of a decoded REPORT (which holds no unknown key)."""
    processes = fields.get('processes')
    return {'worker': fields.get('worker'),
            'processes': None if processes is None else
            [protocol.kept_process(p) for p in processes],
            'reason': fields.get('reason')}


class Reports:
    """The room the nodes' kept reports (and their last rejections) take in the
    state file. Each node may keep its share of REPORTS_SHARES (at least
    MIN_SHARE); beyond it, a report takes from the pool that the shares leave of
    REPORTS_BYTES, first come. So the reports are counted at most REPORTS_BYTES
    (or MIN_SHARE a node, in a fleet of more than 24,576), whatever the nodes
    say: an honest fleet's are whole (10,000 nodes of ten processes are counted
    19 MiB), and peers that fill the pool first (made-up reports, without keys;
    1 MB at most per stolen key) leave every node its share. A report that does
    not fit is kept short (`fitted`).

    Not a fixed budget per node: one that keeps 1000 honest processes whole
    (170 KB) would let 10,000 nodes take 1.7 GB; one that 10,000 nodes may all
    fill in 64 MiB would cut a node of fifty. (Until the nodes that held more
    report again, a fleet grown by an edit may hold its new nodes' shares more.)"""

    def __init__(self):
        self.share, self.pool = REPORTS_SHARES, REPORTS_BYTES - REPORTS_SHARES
        self.beyond = 0             # what reports take beyond their shares, together

    def fleet(self, count, nodes):
        """The master file lists `count` nodes; `nodes` are all the master knows."""
        self.share = max(MIN_SHARE, REPORTS_SHARES // max(1, count))
        self.pool = max(0, REPORTS_BYTES - self.share * count)
        self.beyond = sum(self._beyond(node.report_bytes) for node in nodes)

    def _beyond(self, size):
        return size - self.share if size > self.share else 0

    def room(self, node):
        """What `node`'s report may take: its share, and what the pool has left."""
        others = self.beyond - self._beyond(node.report_bytes)
        return self.share + (self.pool - others if self.pool > others else 0)

    def keep(self, node, fields, frame):
        """(report, last_rejected) of a managed node's REPORT `fields` (its JSON
        `frame`), as the master keeps them. (A REPORT's hot path: few calls.)"""
        report, rejected = kept_report(fields), fields.get('last_rejected')
        room, size = self.room(node), _wire_bytes(frame)
        if size > room:             # rarely: a big report, or a full pool
            report, rejected, size = fitted(report, rejected, room)
        share, held = self.share, node.report_bytes
        self.beyond += (size - share if size > share else 0) - \
            (held - share if held > share else 0)
        node.report_bytes = size
        return report, rejected

    def forget(self, node):
        """`node` is gone: its report takes no room."""
        self.beyond -= self._beyond(node.report_bytes)
        node.report_bytes = 0


def _wire_bytes(frame):
    """What a REPORT's kept parts take in the state file, from its bytes on the
    wire, with no walk through them (a report's hot path; an honest report's
    kept parts are its bytes but 230 or so). The file is JSON as jsonfile.dumps
    writes it, in which a text takes no more than on a wire of printable ASCII,
    but up to 6 times more from other bytes (e with an acute accent is 2 bytes,
    \\u00e9 6; DEL 1 and 6). Only a number written short may take more than
    it was counted: 1e11 is 100000000000.0, and a process of four such takes
    1.4 times its bytes."""
    if not frame.isascii() or b'\x7f' in frame:
        return 6 * len(frame)
    return len(frame)


def fitted(report, rejected, room):
    """(report, rejected, their bytes in the state file) within `room` bytes:
    whole if they fit (measured), else short: every text at most SHORT_TEXT
    bytes, every list its first SHORT_ITEMS entries, and the first processes
    that fit; the report's `more` counts those left out."""
    size = _bytes(report) + _bytes(rejected)
    if size <= room:
        return report, rejected, size
    processes = report['processes']
    short = {'worker': shortened(report['worker']), 'reason': shortened(report['reason']),
             'processes': None if processes is None else [], 'more': len(processes or ())}
    rejected = shortened(rejected)
    size = _bytes(short) + _bytes(rejected)         # (`more` as long as it may be)
    for process in processes or ():
        process = shortened(process)
        more = _bytes(process) + 1                  # (and a comma)
        if size + more > room:
            break
        short['processes'].append(process)
        size += more
    short['more'] -= len(short['processes'] or ())
    return short, rejected, size


def _bytes(value):
    return len(jsonfile.dumps(value))


def shortened(value):
    """`value` with its texts clipped and its lists cut (see `fitted`)."""
    if type(value) is str:
        return short_text(value)
    if type(value) is list:
        return [shortened(item) for item in value[:SHORT_ITEMS]]
    if type(value) is dict:
        return {key: shortened(item) for key, item in value.items()}
    return value


def short_text(text, limit=SHORT_TEXT):
    """`text`, or its beginning and '...', in at most `limit` bytes of the state
    file (a character takes up to 12: \\ud83d\\ude00)."""
    if len(text) * 12 <= limit or (len(text) * 6 <= limit and text.isascii()):
        return text                 # (the usual case, without encoding it)
    if _escaped(text) <= limit:
        return text
    fits, over = 0, min(len(text), limit) + 1     # the longest prefix that fits
    while over - fits > 1:
        middle = (fits + over) // 2
        if _escaped(text[:middle]) <= limit - 3:
            fits = middle
        else:
            over = middle
    return text[:fits] + '...'


def _escaped(text):
    return len(encode_basestring_ascii(text)) - 2


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
