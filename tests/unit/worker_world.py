"""The worker's policy in a test world: scripted facts and a fake clock in, actions
out. Shared by the policy's unit tests (processes, health, commands)."""
import signal

from dpd.worker import actions as act
from dpd.worker import events as ev
from dpd.worker.config import parse_worker
from dpd.worker.health import parse_notification
from dpd.worker.policy import WorkerPolicy


def config(*procs):
    return parse_worker({'procs': list(procs)}, '/w.json', 'nobody')


def proc(name, **keys):
    return dict({'name': name, 'run': '/bin/sleep', 'args': ['100']}, **keys)


def notifying(name, **keys):
    return proc(name, notify=True, **keys)


def of(kind, actions):
    return [a for a in actions if isinstance(a, kind)]


def logged(actions, level=None):
    return [a.message for a in of(act.Log, actions) if level is None or a.level == level]


class World:
    """A policy plus the pids it was given; answers like an executor would: a
    process's tree is empty at once (unless its name is in `leftovers`), a spawn
    works (unless its name is in `failing`), a check named in `answers` ends at
    once with that (passed, detail)."""

    def __init__(self, *procs, leftovers=(), failing=(), answers=()):
        self.policy = WorkerPolicy()
        self.next_pid = 1000
        self.pids = {}
        self.spawned = []                   # names, in the order they were spawned
        self.leftovers = set(leftovers)     # names whose tree is not empty yet
        self.failing = set(failing)         # names whose spawn fails
        self.answers = dict(answers)        # name -> (passed, detail): its checks end at once
        self.out = self.handle(ev.ConfigLoaded(config(*procs)), 0.0)

    def handle(self, event, now):
        actions, pending = [], [event]
        while pending:
            answers = self.policy.handle(pending.pop(0), now)
            actions += answers
            for action in answers:
                pending += self.answer(action)
        self.check_snapshot()
        return actions

    def check_snapshot(self):
        """After every step of every policy test: the snapshot that reuses the records
        of unchanged processes is the one made afresh (a record input changed in
        place, and so never seen to change, would show here)."""
        reused = self.policy.snapshot()
        kept, self.policy._records = self.policy._records, {}
        assert reused == self.policy.snapshot()
        self.policy._records = kept

    def answer(self, action):
        if isinstance(action, act.ClearTree) and action.name not in self.leftovers:
            return [ev.TreeEmptied(action.name)]
        if isinstance(action, act.Spawn):
            self.spawned.append(action.name)
            if action.name in self.failing:
                return [ev.SpawnFailed(action.name, '/bin/sleep: permission denied')]
            self.next_pid += 1
            self.pids[action.name] = self.next_pid
            return [ev.ProcessStarted(action.name, self.next_pid, (1, self.next_pid),
                                      '/diprocd/w/%s' % action.name)]
        if isinstance(action, act.RunCheck) and action.name in self.answers:
            return [ev.CheckDone(action.name, action.seq, *self.answers[action.name])]
        return []

    def proc(self, name):
        return self.policy.procs[name]

    def state(self, name):
        return self.policy.procs[name].state

    def record(self, name):
        return next(r for r in self.policy.snapshot()['procs'] if r['name'] == name)

    def timer(self, name):
        """When the policy next acts on `name` by itself (its own deadline)."""
        return self.policy.timers.get(name)

    def crash(self, name, now, code=1):
        return self.handle(ev.ProcessExited(name, self.pids[name], code, None), now)

    def tick(self, now):
        return self.handle(ev.Tick(), now)

    def until(self, now, most=1000):
        """Every Tick the policy asks for up to `now`; their actions. A policy that
        asks for more than `most` Ticks on the way spins: that fails."""
        out = []
        for _ in range(most):
            due = self.policy.next_deadline()
            if due is None or due > now:
                return out
            out += self.tick(due)
        raise AssertionError('the policy spins: still asking for a Tick at %s' % due)

    def notify(self, name, text, now, pid=None, lineage=(), cgroup=None):
        pid = self.pids[name] if pid is None else pid
        return self.handle(ev.Notified(name, parse_notification(text.encode()), pid,
                                       tuple(lineage), cgroup), now)

    def check(self, name, passed, now, detail='refused'):
        """Run the check due by `now` (Tick) and answer it at `now`."""
        out = self.until(now)
        runs = [a for a in of(act.RunCheck, out) if a.name == name]
        assert runs, 'no check of %s was due by %s' % (name, now)
        return out + self.handle(ev.CheckDone(name, runs[-1].seq, passed, detail), now)

    def checks_fail(self, name, end):
        """Every deadline up to `end`, each check failing as soon as it runs."""
        out = []
        while self.policy.next_deadline() is not None and self.policy.next_deadline() <= end:
            now = self.policy.next_deadline()
            ticked = self.tick(now)
            for run in of(act.RunCheck, ticked):
                ticked += self.handle(ev.CheckDone(name, run.seq, False, 'refused'), now)
            out += ticked
        return out

    def stopped(self, name, now):
        """The process ends on its stop signal and its group is gone."""
        pid = self.pids[name]
        out = self.handle(ev.ProcessExited(name, pid, None, signal.SIGTERM), now)
        return out + self.handle(ev.GroupChecked(name, pid, False), now)

    def ask(self, number, command, names, now, uid=0, **fields):
        """An operator's request on control connection `number` (SPEC 6.3)."""
        request = dict({'v': 1, 'command': command, 'names': list(names)}, **fields)
        return self.handle(ev.CommandReceived(number, request, uid), now)

    def restart(self, number, now, *names):
        return self.ask(number, 'restart', names, now)
