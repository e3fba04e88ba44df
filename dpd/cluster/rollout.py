"""A staged rollout (SPEC 6.5): one master edit served to the nodes it changes in
waves, each wave started once the last one succeeded; halted when too many fail.

Pure, and the master policy's only source of "who gets the new list now": it
reads clock values handed in, and verdicts the policy forms from each node's
reports (`ok`: the new version applied and every process as desired; `bad`:
refused, or a process failed, in backoff or unhealthy). A node not `ok`
within `wait_ready` of its wave's start has failed too.

    waiting ──wave starts──> serving ──ok──> succeeded
                                 └──bad / wait_ready passed──> failed (──auto_revert──> reverted)
"""
import math

from ..record import Record

WAITING, SERVING, SUCCEEDED, FAILED, REVERTED = (
    'waiting', 'serving', 'succeeded', 'failed', 'reverted')
STATUSES = (WAITING, SERVING, SUCCEEDED, FAILED, REVERTED)
HOLDING = (WAITING, REVERTED)       # a node keeps its current list


class RolloutSpec(Record):
    """The master file's `rollout` key."""
    max_parallel: object          # an int, or a percentage string "10%"
    wait_ready: float = 60.0
    max_failed: int = 0
    auto_revert: bool = False

    def wave_size(self, count):
        """Nodes per wave, of `count` changed nodes (a percentage rounds up; at least 1)."""
        if isinstance(self.max_parallel, str):
            return max(1, math.ceil(count * float(self.max_parallel[:-1]) / 100))
        return max(1, self.max_parallel)


class Rollout:
    def __init__(self, ident, spec, nodes, now):
        """`nodes`: the nodes the edit changes (taken in name order)."""
        self.ident, self.spec = ident, spec
        nodes = sorted(nodes)
        size = spec.wave_size(len(nodes))
        self.waves = [nodes[i:i + size] for i in range(0, len(nodes), size)]
        self.wave = -1                  # the wave under way
        self.status = dict.fromkeys(nodes, WAITING)
        self.since = {}                 # node -> when it was sent the new list
        self.reasons = {}               # node -> why it failed
        self.halted = None              # why the rollout stopped, once it has
        self._next_wave(now)

    # ------------------------------------------------------------ what the master serves

    def serves_new(self, node):
        """The node gets the new list (its wave came, and it was not reverted)."""
        return self.status.get(node, SUCCEEDED) in (SERVING, SUCCEEDED, FAILED)

    def holds(self, node):
        """The node keeps its current list for now (waiting for its wave, or left
        out by a halt, or given its old list back)."""
        return self.status.get(node) in HOLDING

    @property
    def finished(self):
        return self.halted is not None or all(s in (SUCCEEDED, FAILED, REVERTED)
                                              for s in self.status.values())

    # ------------------------------------------------------------ facts

    def observe(self, node, verdict, reason, now):
        """A node's verdict (`ok`, `bad` or None: not yet) from its latest report.
        Returns the nodes whose served list changed (a new wave, a revert)."""
        if self.status.get(node) != SERVING or verdict is None:
            return []
        if verdict == 'ok':
            self.status[node] = SUCCEEDED
        else:
            self._fail(node, reason)
        return self._settle(now)

    def deadline(self):
        """When a serving node runs out of `wait_ready` (None: none is waited for)."""
        times = [self.since[n] + self.spec.wait_ready for n, s in self.status.items()
                 if s == SERVING]
        return min(times) if times else None

    def due(self, now):
        """Serving nodes not ready in time have failed; the nodes whose list changed."""
        for node, status in self.status.items():
            if status == SERVING and now >= self.since[node] + self.spec.wait_ready:
                self._fail(node, 'not ready within %g s' % self.spec.wait_ready)
        return self._settle(now)

    def forget(self, node, now):
        """A node gone from the master file: nothing to wait for."""
        if self.status.pop(node, None) is None:
            return []
        return self._settle(now)

    # ------------------------------------------------------------ waves

    def _fail(self, node, reason):
        self.status[node] = FAILED
        self.reasons[node] = reason

    def _settle(self, now):
        """Halt past `max_failed` (the node that failed last named), revert what
        failed (with auto_revert, also a node of the last wave failing after the
        halt), or start the next wave once none is serving."""
        failed = [n for n, s in self.status.items() if s in (FAILED, REVERTED)]
        if self.halted is None and len(failed) > self.spec.max_failed:
            node = next(reversed(self.reasons))          # the last to fail
            self.halted = '%s: %s' % (node, self.reasons[node])
        if self.halted is not None:
            return self._revert() if self.spec.auto_revert else []
        if not any(s == SERVING for s in self.status.values()):
            return self._next_wave(now)
        return []

    def _next_wave(self, now):
        while self.wave + 1 < len(self.waves):
            self.wave += 1
            started = [n for n in self.waves[self.wave] if self.status.get(n) == WAITING]
            for node in started:
                self.status[node], self.since[node] = SERVING, now
            if started:
                return started
        return []

    def _revert(self):
        failed = [n for n, s in self.status.items() if s == FAILED]
        for node in failed:
            self.status[node] = REVERTED
        return failed

    # ------------------------------------------------------------ views

    def counts(self):
        done = sum(1 for s in self.status.values() if s in (SUCCEEDED, FAILED, REVERTED))
        return done, len(self.status)

    def describe(self):
        """One line: `rollout ID: wave 3/10, 20 of 100 nodes done`, or halted."""
        if self.halted is not None:
            return 'rollout %s halted: %s' % (self.ident, self.halted)
        done, total = self.counts()
        if self.finished:
            return 'rollout %s done: %d nodes' % (self.ident, total)
        return 'rollout %s: wave %d/%d, %d of %d nodes done' % (
            self.ident, self.wave + 1, len(self.waves), done, total)

    def record(self, to_wall):
        """For the master's state file (times as wall clock) and its restart."""
        return {'id': self.ident, 'wave': self.wave, 'waves': self.waves,
                'status': dict(self.status), 'reasons': dict(self.reasons),
                'since': {n: to_wall(t) for n, t in self.since.items()},
                'halted': self.halted, 'line': self.describe()}

    @classmethod
    def resumed(cls, spec, record, to_mono):
        """The rollout a previous master left (its record), going on."""
        rollout = cls.__new__(cls)
        rollout.ident, rollout.spec = record['id'], spec
        rollout.waves = [list(w) for w in record['waves']]
        rollout.wave = record['wave']
        rollout.status = dict(record['status'])
        rollout.reasons = dict(record['reasons'])
        rollout.since = {n: to_mono(t) for n, t in record['since'].items()}
        rollout.halted = record['halted']
        return rollout
