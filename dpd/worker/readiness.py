"""How the worker's policy follows readiness and health (SPEC 6.1): sd_notify
messages, checks and their schedule, and the processes that wait for others
(`depends`).

A part of WorkerPolicy (policy.py), written apart so each reads alone. The
arithmetic of one process's readiness is `health.Health`; this part turns
its outcomes into states, log lines and actions.
"""
import logging

from ..policy import log_action
from . import actions as act
from . import lifecycle as lc
from .health import Health, Outcome


def health_timer(name):
    """The key of a process's health deadlines (its own timer is its name)."""
    return ('health', name)


class Readiness:
    def _watch_readiness(self, proc, now, out, ready=False, status=None):
        """A process just started (or was adopted): `running` at once, or once ready."""
        if not proc.spec.waits_for_ready:
            self._ready(proc, now, out)
            return
        proc.health = Health(proc.spec, now, ready, status, proc.check_seq)
        if ready:
            self._ready(proc, now, out)
        if proc.early_notice:            # a daemon that spoke before its pid file did
            self._follow(proc, proc.health.notified(proc.early_notice, now), now, out)
            proc.early_notice = {}
        self._set_health_timer(proc)

    def _set_health_timer(self, proc):
        self.timers.set(health_timer(proc.name), proc.health.deadline() if proc.health else None)

    def _ready(self, proc, now, out):
        self._move(proc, lc.RUNNING, now)
        if proc.spec.waits_for_ready:
            out.append(log_action(logging.INFO, '%s: ready' % proc.name))
        self._start_dependents(proc, now, out)

    def _on_notified(self, event, now, out):
        proc = self.procs.get(event.name)
        if proc is None or not proc.spec.notify or proc.state not in (lc.STARTING, lc.RUNNING):
            return
        if not _in_tree(proc, event):
            self.limited(out, 'foreign-notify', '%s: ignored sd_notify from pid %d, which is not '
                         'in its tree' % (proc.name, event.pid), now)
            return
        if proc.health is None:
            if proc.launch:              # a daemon not found yet: heard once it is
                proc.early_notice.update({k: v for k, v in event.fields.items()
                                          if k in ('READY', 'STATUS', 'WATCHDOG')})
            return
        before = proc.health.record()
        self._follow(proc, proc.health.notified(event.fields, now), now, out)
        self.dirty = self.dirty or proc.health is None or proc.health.record() != before

    def _on_check_done(self, event, now, out):
        proc = self.procs.get(event.name)
        if proc is None or proc.health is None:
            return
        before = proc.health.record()
        self._follow(proc, proc.health.checked(event.seq, event.passed, event.detail, now),
                     now, out)
        # a check that changes nothing rewrites no state file (200 checks a second...)
        self.dirty = self.dirty or proc.health is None or proc.health.record() != before

    def _health_due(self, name, now, out):
        proc = self.procs.get(name)
        if proc is None or proc.health is None:
            return
        for outcome in proc.health.due(now):
            self._follow(proc, outcome, now, out)

    def _follow(self, proc, outcome, now, out):
        """What an outcome of the process's readiness means, done."""
        if outcome is not None:
            if outcome.kind == Outcome.READY and proc.state == lc.STARTING:
                self._ready(proc, now, out)
            elif outcome.kind == Outcome.RECOVERED:
                out.append(log_action(logging.INFO, '%s: healthy again' % proc.name))
            elif outcome.kind == Outcome.UNHEALTHY:
                self._unhealthy(proc, outcome.reason, now, out)
            elif outcome.kind == Outcome.RUN_CHECK:
                out.append(act.RunCheck(proc.name, proc.health.seq, proc.spec, self.confine))
            elif outcome.kind == Outcome.KILL_CHECK:
                out.append(act.KillCheck(proc.name))
        if proc.health is not None:
            self._set_health_timer(proc)

    def _unhealthy(self, proc, reason, now, out):
        """Unhealthy: restarted, and counted as a crash (so a service that never gets
        healthy ends in backoff); or, with `on_unhealthy: "none"`, only said."""
        check = proc.spec.health
        restart = check is None or check.on_unhealthy == 'restart'
        out.append(log_action(logging.WARNING, '%s: unhealthy: %s%s' % (
            proc.name, reason, '; restarting it' if restart else '')))
        self.dirty = True
        if restart and proc.state in (lc.STARTING, lc.RUNNING):
            proc.error = 'unhealthy: %s' % reason   # still said in backoff, until a start
            self._stop(proc, now, out, then=lc.THEN_RESTART)

    # ------------------------------------------------------------ depends

    def _waits_for(self, proc):
        """The dependencies of `proc` that are not ready: running, or (a one-shot,
        `restart: false`) exited with status 0."""
        return [name for name in proc.spec.depends if not _done_for_dependents(
            self.procs.get(name))]

    def _start_dependents(self, proc, now, out):
        for other in list(self.dependents(proc.name)):
            if other.state == lc.WAITING and not self._waits_for(other):
                self._start(other, now, out)


def _done_for_dependents(proc):
    """Ready (running), or for a one-shot (`restart: false`, say a migration): ended
    with status 0; while it runs, it is not done."""
    if proc is None:
        return False
    if proc.spec.restart:
        return proc.state == lc.RUNNING
    return proc.state == lc.EXITED and (proc.last_exit or {}).get('code') == 0


def _in_tree(proc, event):
    """The sender of a notification is the process or one of its descendants (of
    its launcher, for a daemon not found yet)."""
    main = proc.pid or (proc.launch.pid if proc.launch else None)
    if main and (event.pid == main or main in event.lineage):
        return True
    return proc.cgroup is not None and event.cgroup == proc.cgroup
