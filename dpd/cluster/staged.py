"""The master's side of a staged rollout (SPEC 6.5): which list each node is
served while an edit goes out in waves, and each node's verdict from its reports.

A mixin of MasterPolicy, as Remote is. A node has two lists: `target`, the
master file's, and `desired`, the one it is served (they differ while it is
held: waiting for its wave, or given its old list back). The Rollout object
decides who gets what; this part forms verdicts from reports and applies what
the Rollout says. Without the `rollout` key every node is served its target at
once, as before.
"""
import logging

from ..policy import log_action
from ..worker import lifecycle
from . import actions as act
from .nodes import Desired
from .rollout import REVERTED, SERVING, WAITING, Rollout

FAILING = (lifecycle.FAILED, lifecycle.BACKOFF)
STABLE_FOR = 2.0        # a node ok for this long (two of its change reports) has succeeded
NAMES_LOGGED = 10       # nodes named in a wave's log line


class Staged:
    rollout = None
    _rollout_view = None            # the rollout's record for the view, until it changes

    def _serve_targets(self, edited, now, out):
        """After a load: serve each node its target, or stage the edit in waves.
        `edited`: the file's content changed (the first load is not an edit: a
        master that restarts mid-rollout resumes it, see _resume)."""
        behind = [n for n in self.nodes.values() if n.managed and n.target is not None and
                  n.target is not n.desired]
        spec = self.config.rollout
        if edited and spec is not None and behind:
            old = self.rollout
            self.rollout = Rollout(str(self.edit_ms), spec, [n.name for n in behind], now)
            self._rollout_started(old, behind, out)
        elif edited or self.rollout is None:
            self._end_rollout(out)
        for node in behind:
            self._serve_as_staged(node, now, out)

    def _rollout_started(self, old, nodes, out):
        rollout = self.rollout
        for node in nodes:
            node.kept = node.desired            # what it keeps while held, or gets back
        self._rollout_changed([n.name for n in nodes] + list(old.status if old else ()))
        self.serving_marks, self.ready_since = {}, {}
        out.append(act.KeepRolloutLists({'id': rollout.ident, 'lists': {
            node.name: node.desired.saved for node in nodes if node.desired is not None}}))
        out.append(log_action(logging.INFO, 'rollout %s: %d nodes in %d waves%s' % (
            rollout.ident, len(nodes), len(rollout.waves),
            '; replaces rollout %s' % old.ident if old else '')))
        self._log_wave(out)

    def _end_rollout(self, out):
        if self.rollout is not None:
            names = list(self.rollout.status)
            self.rollout = None
            self._rollout_changed(names)
            out.append(act.DropRolloutLists())

    def _serve_as_staged(self, node, now, out):
        """Give `node` what the rollout says: its target, or the list it keeps."""
        rollout = self.rollout
        if rollout is None or rollout.serves_new(node.name):
            if node.desired is not node.target:
                self._mark(node)
                self._serve(node, node.target, now, out)
        elif rollout.status[node.name] == REVERTED and node.kept is not None and \
                node.desired.sha256 != node.kept.sha256:
            # its old list again, under a new version (a client takes no older one); a
            # node new to the file had none: it keeps the new one
            self._serve(node, self._renewed(node, node.kept), now, out)

    def _renewed(self, node, desired):
        return Desired(self._next_gen(node, 0), desired.sha256, desired.body, desired.count)

    def _serve(self, node, desired, now, out):
        node.desired, node.changed_at = desired, now
        self._touch(node)
        self._push(node, now, out)

    def _mark(self, node):
        """What the node's worker said of its list before it was sent the new one: a
        verdict needs the worker to have loaded the new list since (a report of the
        applied file alone still lists the old processes)."""
        worker = node.report.get('worker') or {}
        applied = node.applied or {}
        if applied.get('sha256') != node.target.sha256:
            self.serving_marks[node.name] = worker.get('config_loaded_at')

    # ------------------------------------------------------------ verdicts

    def _judge(self, node, now, out):
        """A report from a node of the wave under way: bad at once; ok once it has
        stayed ok for STABLE_FOR (a process that crashes just after it started
        was `running` for a moment: that is not a success)."""
        rollout = self.rollout
        if rollout is None or rollout.status.get(node.name) != SERVING:
            return
        verdict, reason = self._verdict(node)
        candidate = self.ready_since.get(node.name)
        if verdict == 'ok' and candidate is None:
            self.ready_since[node.name] = (now, _restarts(node))
        elif verdict == 'ok' and _restarts(node) != candidate[1]:
            self._observe(node.name, 'bad', _crashed(node, candidate[1]), now, out)
        elif verdict == 'bad':
            self._observe(node.name, verdict, reason, now, out)
        elif verdict is None:
            self.ready_since.pop(node.name, None)

    def _observe(self, name, verdict, reason, now, out):
        self.ready_since.pop(name, None)
        was_halted = self.rollout.halted
        self._apply_rollout(self.rollout.observe(name, verdict, reason, now), was_halted,
                            now, out)

    def _verdict(self, node):
        target = node.target.sha256
        rejected = node.last_rejected or {}
        if rejected.get('sha256') == target:
            return 'bad', 'list refused: %s' % rejected.get('reason', 'no reason given')
        worker = node.report.get('worker') or {}
        if (node.applied or {}).get('sha256') != target or not worker.get('running'):
            return None, None
        if node.name in self.serving_marks and \
                worker.get('config_loaded_at') == self.serving_marks[node.name]:
            return None, None           # the worker has not loaded the new list yet
        processes = node.report.get('processes') or []
        for process in processes:
            if process.get('health') == 'unhealthy':
                return 'bad', '%s unhealthy' % process.get('name')
            if process.get('state') in FAILING:
                return 'bad', '%s %s' % (process.get('name'), process.get('state'))
        if len(processes) == node.target.count and all(map(lifecycle.as_desired, processes)):
            return 'ok', None           # (a process being removed is still listed)
        return None, None

    def _rollout_tick(self, now, out):
        rollout = self.rollout
        if rollout is None:
            return
        for name, (since, _) in list(self.ready_since.items()):
            if now >= since + STABLE_FOR and rollout.status.get(name) == SERVING:
                self._observe(name, 'ok', None, now, out)
        deadline = rollout.deadline()
        if deadline is not None and now >= deadline:
            was_halted = rollout.halted
            self._apply_rollout(rollout.due(now), was_halted, now, out)

    def _rollout_deadline(self):
        if self.rollout is None:
            return None
        times = [since + STABLE_FOR for since, _ in self.ready_since.values()]
        deadline = self.rollout.deadline()
        return min(times + ([] if deadline is None else [deadline]), default=None)

    def _apply_rollout(self, names, was_halted, now, out):
        """The rollout moved: log it, and serve the nodes whose list changed."""
        rollout = self.rollout
        self._rollout_changed(names)        # the only nodes held, or no longer held, now
        if rollout.halted and not was_halted:
            out.append(log_action(logging.ERROR, '%s; %s' % (rollout.describe(), (
                'the failed nodes get their previous list back' if rollout.spec.auto_revert
                else 'the failed nodes keep the new list') + ', the nodes not reached keep '
                'theirs until the next edit')))
        elif names and any(rollout.status[n] == SERVING for n in names):
            self._log_wave(out)
        elif rollout.finished and not rollout.halted:
            out.append(log_action(logging.INFO, rollout.describe()))
            out.append(act.DropRolloutLists())      # every node has its new list
        for name in names:
            self._serve_as_staged(self.nodes[name], now, out)

    def _log_wave(self, out):
        rollout = self.rollout
        wave = [n for n in rollout.waves[rollout.wave] if rollout.status[n] == SERVING]
        more = ' and %d more' % (len(wave) - NAMES_LOGGED) if len(wave) > NAMES_LOGGED else ''
        out.append(log_action(logging.INFO, 'rollout %s: wave %d/%d: %s%s' % (
            rollout.ident, rollout.wave + 1, len(rollout.waves),
            ', '.join(wave[:NAMES_LOGGED]), more)))

    def _rollout_changed(self, names):
        """Held flags and the view follow the rollout."""
        self._rollout_view = None
        rollout = self.rollout
        for name in names:
            node = self.nodes.get(name)
            if node is not None:
                held = rollout is not None and rollout.holds(name)
                if held != node.held:
                    node.held = held
                    self._touch(node)
        self.dirty = True

    # ------------------------------------------------------------ the view, a restart

    def rollout_record(self):
        """The rollout for the state file (wall-clock times), made again only when
        it changed; None without one."""
        if self.rollout is None:
            return None
        if self._rollout_view is None:
            mono, wall = self.clocks
            record = self.rollout.record(lambda t: round(wall + t - mono, 3))
            record['targets'] = {n: self.nodes[n].target.sha256 for n in self.rollout.status
                                 if n in self.nodes and self.nodes[n].target is not None}
            self._rollout_view = record
        return self._rollout_view

    def _still_targets(self, targets):
        """The master file gives each node of the rollout what it rolled out (a node
        gone from the file is left out of the rollout)."""
        for name, sha256 in targets.items():
            node = self.nodes.get(name)
            if node is not None and (node.target is None or node.target.sha256 != sha256):
                return False
        return True

    def _resume(self, saved, now, out):
        """At start: the rollout the last master left, if the file still says what
        it rolled out (else this load is an edit of its own). Its held nodes keep
        the lists it kept for them."""
        record, lists = saved
        spec = self.config.rollout
        if spec is None or not self._still_targets(record['targets']):
            out.append(log_action(logging.WARNING, 'the rollout under way when the master '
                                  'stopped is not resumed: the master file changed since; its '
                                  'nodes get their lists at once'))
            return
        mono, wall = self.clocks
        self.rollout = Rollout.resumed(spec, record, lambda t: mono + t - wall)
        for name in [n for n in self.rollout.status if n not in self.nodes]:
            self.rollout.forget(name, now)
        self.serving_marks, self.ready_since = {}, {}
        for name, status in self.rollout.status.items():
            node = self.nodes[name]
            kept = lists.get(name)
            node.kept = None if kept is None else self._renewed(node, Desired(**kept))
            if status == WAITING or (status == REVERTED and kept is not None):
                node.desired = node.kept        # held: what it kept
        self._rollout_changed(list(self.rollout.status))
        out.append(log_action(logging.INFO, 'resumed %s' % self.rollout.describe()))


def _restarts(node):
    return {p.get('name'): p.get('restarts') for p in node.report.get('processes') or []}


def _crashed(node, before):
    names = [n for n, count in _restarts(node).items() if count != before.get(n)]
    return '%s crashed' % ', '.join(sorted(map(str, names)))
