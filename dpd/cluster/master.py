"""The master's policy: node lists -> versions, replies, and the cluster view.

Pure: `handle(event, now)` returns actions; `now` is monotonic, and the wall
time a generation needs comes with the ConfigLoaded fact. A node's list is
state, not a command: it travels whole, with (gen, sha256); "in sync" means
equal hashes, and the gen only orders competing copies.
"""
import logging

from ..policy import log_action
from . import actions as act
from . import events as ev
from . import protocol
from .nodes import (PENDING_GRACE, STALE_AFTER, Aging, Desired, Node,  # noqa: F401
                    Reports, same, short_text, shortened)
from .policy import NetworkPolicy
from .protocol import HUGZ_IVL, REPORT_IVL, STATS, UPDATES
from .remote import Remote
from .staged import Staged
from .states import NOT_AS_DESIRED

NOTIFY_GAP = 1.0                      # at most one republish per node per second
STRANGER_TTL = 10 * STALE_AFTER       # how long a node outside the file stays in the view
MAX_STRANGERS = 1000                  # nodes outside the file kept in the view at once
REMEMBERED_PER_NODE, REMEMBERED_MORE = 2, 100   # connections whose last request is kept
MAX_PEERS = 8                         # clients (boots) remembered per node
AGING_IVL = 1.0                       # node states that change with time are re-read
STATE_INTERVAL_PER_NODE = 0.002       # the state file, rewritten at most this often...
STATE_INTERVAL_MAX = 2.0              # ...and at least every 2 s when it changed
STATE_DELAY_MAX = 1.0                 # a first change waits at most this long for more
VERSIONS_LOGGED = 10                  # nodes named one per line; beyond, one summary line


class MasterPolicy(Staged, Remote, NetworkPolicy):
    crash_note = 'the nodes keep their lists'
    STATE_WRITE_SHARE = 0.1     # a big fleet's file written at most a tenth of the time

    def __init__(self, epoch, secure, previous=None, rollout=None):
        super().__init__({
            ev.ConfigLoaded: self._on_config, ev.ConfigRejected: self._on_config_rejected,
            ev.LinkMessage: self._on_message, ev.LinkEvent: self._on_link_event,
            ev.SignalReceived: self.on_signal, ev.ThreadCrashed: self.on_thread_crashed,
            ev.CommandReceived: self._on_command, ev.CommandGone: self._on_command_gone,
            ev.Tick: self._on_tick,
        })
        self.epoch, self.secure = epoch, secure
        self.relays, self.relay_count = {}, 0    # operators' commands to nodes (remote.py)
        self.nodes = {}
        self.previous = dict(previous or {})   # node -> {gen, sha256}, from the last master
        self.saved_rollout = rollout     # (record, lists) of a rollout the last master left
        self.serving_marks = {}          # staged.py: a node's worker before its new list
        self.ready_since = {}            # and since when a node of the wave looks ready
        self.clocks = (0.0, 0.0)         # (monotonic, wall) of the last load
        self.edit_ms = 0                 # and its wall time in ms: a rollout's id
        self.global_gen = max([r['gen'] for r in self.previous.values()] or [0])
        self.epochs = 0                  # how often the gens ran out (see _next_gen)
        self.config, self.config_errors = None, ()
        self.hseq = 0
        self.next_hugz = self.next_aging = None
        self.states = {}                 # node -> last computed state (to notice changes)
        self.aging = Aging()
        self.report_ivl = REPORT_IVL     # what ACKs tell nodes (protocol.report_interval)
        self.hugz_ivl = HUGZ_IVL         # and the heartbeat (protocol.hugz_interval)
        self.requests = protocol.RepeatedRequests(REMEMBERED_MORE)
        self.reports = Reports()         # the room nodes' reports take in the state file
        self._order = None               # the nodes sorted by name, for the view

    def next_deadline(self):
        deadlines = [d for d in (self.next_hugz, self.next_aging, self._relays_due(),
                                 self._rollout_deadline()) if d is not None]
        return min(deadlines) if deadlines else None

    @staticmethod
    def _state_of(node, now):
        return node.state(now)

    def state_interval(self):
        """A thousand nodes send a hundred reports a second, and each changes the
        state file: write it at most every 2 ms per node (2 s for a thousand
        nodes), so writing it costs no more than about 2 % of a core."""
        return min(STATE_INTERVAL_MAX, STATE_INTERVAL_PER_NODE * len(self.nodes))

    def state_delay(self):
        """A first change waits as long (at most a second, SPEC 2.5) for those that
        follow it: an edit changes every node's record, and each node's report of it
        changes the record again within the fan-out (half a second for a thousand
        nodes). Written at once, the edit cost two rewrites of every record."""
        return min(STATE_DELAY_MAX, self.state_interval())

    # ------------------------------------------------------------ the master file

    def _on_config(self, event, now, out):
        config, first = event.config, self.config is None
        edited = not first and config.sha256 != self.config.sha256
        if self.config_errors:
            out.append(log_action(logging.INFO, '%s: valid again; applying it' % config.path))
        self.config, self.config_errors, self.dirty = config, (), True
        self.loaded_at = event.wall
        self.report_ivl = protocol.report_interval(len(config.nodes))
        self.hugz_ivl = protocol.hugz_interval(len(config.nodes))
        self.requests.limit = REMEMBERED_PER_NODE * len(config.nodes) + REMEMBERED_MORE
        wall_ms, changed = int((event.wall or 0) * 1000), []
        self.clocks, self.edit_ms = (now, event.wall or 0.0), wall_ms
        for name, listed in config.nodes.items():
            node = self.nodes.get(name) or self._add(name)
            if self._apply_node(node, listed, wall_ms, now, out):
                changed.append(node)
        _log_new_versions(changed, out)
        self.reports.fleet(len(config.nodes), self.nodes.values())
        for node in self.nodes.values():
            if node.managed and node.name not in config.nodes:
                node.managed = False
                self._touch(node)
                out.append(log_action(logging.WARNING, 'node %s: no longer in the master file; its '
                                      'client keeps its list (give it [] to stop everything)'
                                      % node.name))
        if first and self.saved_rollout:
            self._resume(self.saved_rollout, now, out)
        self._serve_targets(edited, now, out)
        if first:
            self.next_hugz = self.next_aging = now

    def _add(self, name):
        node = self.nodes[name] = Node(name)
        self._order = None
        return node

    def _touch(self, node):
        """Something the view shows of `node` changed: its record is made again, and
        the next aging tick reads its state."""
        node.record, self.dirty = None, True
        self.aging.touch(node)

    def _apply_node(self, node, listed, wall_ms, now, out):
        """True when the node's list changed: its `target` is then a new version
        (served at once, or in its wave: staged.py)."""
        if not node.managed or node.errors != listed.errors:
            self._touch(node)
        node.managed = True
        if not listed.valid:
            if listed.errors != node.errors:
                for message in listed.errors:
                    out.append(log_action(logging.ERROR, message))
                out.append(log_action(logging.ERROR, 'node %s: list rejected; %s' % (
                    node.name, 'it keeps its last valid list' if node.desired
                    else 'it gets nothing until the list is valid')))
            node.errors = listed.errors
            return False
        node.errors = ()
        if node.desired is not None and node.desired.sha256 == listed.sha256:
            node.target = node.desired        # what it is served (again: a revert undone)
            return False
        if node.target is not None and node.target.sha256 == listed.sha256:
            return False
        previous = self.previous.pop(node.name, None)
        if previous and previous.get('sha256') == listed.sha256:
            gen = previous['gen']             # the same list as before a master restart
        else:
            gen = self._next_gen(node, wall_ms)
        self.global_gen = max(self.global_gen, gen)
        node.target = Desired(gen, listed.sha256, listed.body, listed.count)
        return True

    def _next_gen(self, node, wall_ms):
        """Versions only grow, and only by the master's own counting: what nodes
        report never moves them (SPEC 5.2). Should they reach the protocol's
        limit, the master starts counting from its clock under a new epoch,
        which clients take as a new master."""
        gen = max(self.global_gen + 1, wall_ms, node.desired.gen + 1 if node.desired else 0)
        if gen <= protocol.MAX_GEN:
            return gen
        self.epochs += 1
        self.epoch = '%s.%d' % (self.epoch.split('.')[0], self.epochs)
        self.global_gen = 0
        return max(1, wall_ms)

    def _on_config_rejected(self, event, now, out):
        self.config_errors, self.dirty = tuple(event.messages), True
        for message in event.messages:
            out.append(log_action(logging.ERROR, message))
        out.append(log_action(logging.ERROR, 'master file rejected; every node keeps its list'))

    # ------------------------------------------------------------ messages

    def _on_message(self, event, now, out):
        if event.socket == UPDATES:
            self._on_subscription(event.frames, now, out)
        elif event.socket == STATS and len(event.frames) >= 2:
            self._on_request(event.frames[0], event.frames[1:], event.user_id, now, out)

    def _on_subscription(self, frames, now, out):
        """XPUB hands us (un)subscriptions, which only first-round clients make: a
        (re)joining node gets a NOTIFY at once, and a node listens until its
        subscription ends (XPUB says the first and the last of a topic's)."""
        if len(frames) != 1 or frames[0][:1] not in (b'\x00', b'\x01'):
            return
        topic = frames[0][1:]
        if topic.startswith(b'N:') and topic.endswith(b'\0'):
            node = self.nodes.get(topic[2:-1].decode('utf-8', 'replace'))
            if node is not None and node.managed:
                node.listens = frames[0][:1] == b'\x01'
                if node.listens:
                    self._notify(node, now, out)

    def _notify(self, node, now, out):
        """A NOTIFY for a new subscription: at most one a second per node (a peer
        can subscribe as often as it likes). An edit's NOTIFY does not count: a
        node that subscribes just after an edit, or just after this master started
        (a restart: every node at once), still gets its own."""
        if node.desired is None:
            return
        if node.notified_at is not None and now - node.notified_at < NOTIFY_GAP:
            return
        node.notified_at = now
        out.append(self._notify_action(node))

    def _notify_action(self, node):
        return act.Send(UPDATES, tuple(protocol.notify(
            node.name, node.desired.gen, node.desired.sha256, self.epoch)))

    def _push(self, node, now, out):
        """A new list goes straight to the connection the node last spoke on, as the
        answer to a HELLO would (the node's own connection: no other node reads it);
        should that connection be gone, the link publishes the NOTIFY instead and
        a node that listens asks. A node not heard from lately only gets the NOTIFY,
        if it listens; one that does not gets its list when it next says HELLO
        (a new connection) or REPORT. (A NOTIFY made for nobody was a quarter of
        the master's work per node on an edit.)"""
        fallback = self._notify_action(node) if node.listens else None
        if node.routing_id is None or node.seen_at is None or \
                now - node.seen_at > node.stale_after:
            if fallback is not None:
                out.append(fallback)
            return
        out.append(act.Send(STATS, (node.routing_id,) + node.reply('STATE', self.epoch),
                            fallback=fallback))

    def _on_request(self, routing_id, frames, user_id, now, out):
        try:
            message = self.requests.decode(routing_id, frames)
        except protocol.ProtocolError as err:
            self.limited(out, 'bad-request', 'dropped a bad message on %s: %s' % (STATS, err),
                          now)
            self._reply(out, routing_id, protocol.error(err.code, str(err)))
            return
        name = message.fields['node']
        if self.secure and user_id != name:
            self.limited(out, 'identity', 'the key of node %s asked as node '
                          '%s: refused' % (user_id, name), now, logging.ERROR)
            self._reply(out, routing_id, protocol.error(
                'identity-mismatch', 'this key belongs to node %s, not %s' % (user_id, name)))
            return
        node = self._node_for(name)
        if node is None:
            self._reply(out, routing_id, protocol.unmanaged(name, self.epoch))
        elif message.kind == 'ANSWER':
            self._on_answer(node, routing_id, message, now, out)   # remote.py
        else:
            node.routing_id = routing_id
            self._record(node, message, frames[-1], now, out)
            self._answer(node, message, routing_id, now, out)

    def _node_for(self, name):
        """The node that asks; a stranger (not in the file) is remembered only while
        few are: without keys anyone can make names up (SPEC 5.2)."""
        node = self.nodes.get(name)
        managed = len(self.config.nodes) if self.config else 0
        if node is None and len(self.nodes) - managed < MAX_STRANGERS:
            node = self._add(name)
        return node

    def _record(self, node, message, frame, now, out):
        fields = message.fields
        first = node.seen_at is None
        node.seen_at = now
        self._touch(node)
        node.applied = same(node.applied, fields.get('applied'))   # (no unknown key)
        boot = fields['boot']
        node.peers = {b: seen for b, seen in node.peers.items()
                      if now - seen[0] < node.stale_after}
        while len(node.peers) >= MAX_PEERS:            # boots are a peer's to make up
            del node.peers[min(node.peers, key=lambda b: node.peers[b][0])]
        if boot not in node.peers and node.peers:
            self.limited(out, 'twins', 'node %s: two clients claim this node '
                          '(client runs %s); give each node its own name%s' % (
                              node.name, ', '.join(sorted(set(node.peers) | {boot})),
                              '' if self.secure else ' (and keys)'), now, logging.ERROR)
        node.peers[boot] = (now, short_text(fields['version']))
        if message.kind == 'REPORT':
            self._keep_report(node, fields, frame)
            if node.managed:
                self._judge(node, now, out)             # staged.py
        if first and node.managed:
            out.append(log_action(logging.INFO, 'node %s: connected' % node.name))

    def _keep_report(self, node, fields, frame):
        """What the node said of its worker and processes, within its room in the
        state file (nodes.Reports); a node outside the file: only why it refused
        a list, short (its processes are not ours)."""
        if node.managed:
            report, rejected = self.reports.keep(node, fields, frame)
            node.report = same(node.report, report)
        else:
            rejected = shortened(fields.get('last_rejected'))
        node.last_rejected = rejected

    def _answer(self, node, message, routing_id, now, out):
        if not node.managed:
            self._reply(out, routing_id, protocol.unmanaged(node.name, self.epoch))
            return
        desired = node.desired
        if desired is None and node.held:   # new to the file, waiting for its wave
            self._reply(out, routing_id, protocol.unmanaged(node.name, self.epoch))
            return
        if desired is None:
            self._reply(out, routing_id, protocol.error(
                'no-valid-list', 'the master file\'s list for this node is invalid'))
            return
        applied = node.applied or {}
        if applied.get('sha256') == desired.sha256:
            self._reply(out, routing_id, node.reply('ACK', self.epoch, self.report_ivl))
            return
        rejected = node.last_rejected or {}
        if message.kind == 'REPORT' and rejected.get('sha256') == desired.sha256:
            # it refused this very list and said why: resending changes nothing, but the
            # answer tells it the master hears it (its stats socket is alive)
            self._reply(out, routing_id, node.reply('ACK', self.epoch, self.report_ivl))
            return
        self._reply(out, routing_id, node.reply('STATE', self.epoch))

    @staticmethod
    def _reply(out, routing_id, frames):
        out.append(act.Send(STATS, (routing_id,) + tuple(frames)))

    def _on_link_event(self, event, now, out):
        if event.kind == 'overloaded':
            self.limited(out, 'overloaded', 'peers flood %s: %s' % (event.socket, event.detail),
                         now, logging.ERROR)
        elif event.kind == 'denied':
            self.limited(out, 'denied', 'refused a connection: unknown node '
                          'key (%s); add the node\'s NODE.key to authorized_keys if it is ours'
                          % event.detail, now, logging.ERROR)
        elif event.kind in ('handshake-protocol', 'handshake-failed'):
            # which of the two a mismatch gives depends on who hangs up first
            self.limited(out, 'handshake', 'a handshake on %s failed (%s): keys configured '
                          'on one side only, a client that pins another master key, or a '
                          'connection cut while it shook hands'
                          % (event.socket, event.detail.strip()), now, logging.ERROR)

    # ------------------------------------------------------------ time, signals

    def _on_tick(self, event, now, out):
        if self.relays:
            self._check_relays(now, out)
        self._rollout_tick(now, out)
        if self.next_hugz is not None and now >= self.next_hugz:
            self.hseq += 1
            out.append(act.Send(UPDATES, tuple(protocol.hugz(self.epoch, self.hseq,
                                                             self.hugz_ivl, self.report_ivl))))
            self.next_hugz = now + self.hugz_ivl
        if self.next_aging is not None and now >= self.next_aging:
            self.next_aging = now + AGING_IVL
            self._forget_strangers(now)
            for node in self.aging.due(now, self.nodes):
                state = node.state(now)
                if self.states.get(node.name) != state:
                    if node.name in self.states and state in NOT_AS_DESIRED:
                        out.append(log_action(logging.WARNING, 'node %s: %s' % (node.name, state)))
                    self.states[node.name], self.dirty = state, True
                self.aging.schedule(node, now)

    def _forget_strangers(self, now):
        """Nodes outside the master file are shown while they talk to us; without keys
        anyone can make one up, so those silent for long are dropped from the view."""
        if len(self.nodes) == (len(self.config.nodes) if self.config else 0):
            return          # every node is in the file: nobody to forget
        for name in [n.name for n in self.nodes.values() if not n.managed and
                     (n.seen_at is None or now - n.seen_at > STRANGER_TTL)]:
            self.reports.forget(self.nodes.pop(name))
            self.states.pop(name, None)
            self.dirty, self._order = True, None

    # ------------------------------------------------------------ the cluster view

    def snapshot(self, now):
        """The cluster view. A node's record is made again only when the node
        changed (or its state did, with time): records are never changed once
        made, so the state file reuses the text of the others."""
        if self._order is None:
            self._order = sorted(self.nodes.values(), key=lambda n: n.name)
        records = []
        for node in self._order:
            state = node.state(now)
            record = node.record
            if record is None or record['state'] != state:
                record = node.record = node.view(state)
            records.append(record)
        return {'epoch': self.epoch, 'config': self.config_record(), 'nodes': records,
                'rollout': self.rollout_record()}


def _log_new_versions(nodes, out):
    """One line per node for a few; for a big edit, one line (a line per node of
    a thousand would be most of the master's work on that edit)."""
    lines = ['node %s: list version %d (%d processes)'
             % (node.name, node.target.gen, node.target.count) for node in nodes]
    if len(lines) <= VERSIONS_LOGGED:
        out.extend(log_action(logging.INFO, line) for line in lines)
        return
    names = ', '.join(node.name for node in nodes[:VERSIONS_LOGGED])
    out.append(log_action(logging.INFO, 'new list versions for %d nodes: %s and %d more (-v '
                          'names each)' % (len(nodes), names, len(nodes) - VERSIONS_LOGGED)))
    out.extend(log_action(logging.DEBUG, line) for line in lines)
