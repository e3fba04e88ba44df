"""How the worker's policy starts processes: the restart limit, the cgroup
cleared first, the spawn, and a `daemon: true` program's daemon looked for.

A part of WorkerPolicy (policy.py), written apart so each reads alone: it
uses the policy's `procs`, `timers`, `_move` and `_set_deadline`.
"""
import logging

from ..policy import log_action
from . import actions as act
from . import lifecycle as lc

DAEMON_WAIT = 10.0        # for a `daemon: true` launcher to leave a live pid in its pid file
DAEMON_POLL = 0.05


class Starting:
    def _start(self, proc, now, out, counted=True):
        """Start now, unless a dependency is not ready (`waiting`) or a counted start
        would break the restart limit (`backoff`)."""
        if self.shutting_down:
            return
        proc.counted = counted
        if self._waits_for(proc):
            if proc.state != lc.WAITING:
                out.append(log_action(logging.INFO, '%s: waiting for %s'
                                      % (proc.name, ', '.join(self._waits_for(proc)))))
            self._move(proc, lc.WAITING, now)
            self._set_deadline(proc, None)
            return
        if counted and not proc.window.allows(now):
            wait_until = proc.window.next_allowed(now)
            if proc.state != lc.BACKOFF:
                out.append(log_action(logging.WARNING, '%s: started %d times in %d s; next '
                                      'start in %.1f s' % (proc.name, lc.MAX_STARTS,
                                                           lc.WINDOW_SECONDS, wait_until - now)))
            self._move(proc, lc.BACKOFF, now)
            self._set_deadline(proc, wait_until)
            return
        self._move(proc, lc.STARTING, now)
        self._set_deadline(proc, None)
        proc.pid = proc.started = proc.launch = None
        proc.clearing = True              # its cgroup must be empty first
        out.append(act.ClearTree(proc.name))

    def _on_tree_emptied(self, event, now, out):
        proc = self.procs.get(event.name)
        if proc is None:
            return
        if proc.state == lc.STARTING and proc.clearing:
            proc.clearing = False
            out.append(act.Spawn(proc.name, proc.spec, self.confine))
        elif proc.state == lc.STOPPING and proc.stop.awaiting_group:
            self._stopped(proc, proc.stop, now, out)

    def _on_started(self, event, now, out):
        proc = self.procs.get(event.name)
        if proc is None or proc.state != lc.STARTING:
            return
        if proc.window.starts or proc.restarts:
            proc.restarts += 1
        if proc.counted:
            proc.window.record(now)
        proc.failures, proc.error, proc.cgroup = 0, None, event.cgroup
        if proc.spec.daemon:
            proc.launch = lc.Launch(event.pid, event.started, now + DAEMON_WAIT)
            self._set_deadline(proc, now + DAEMON_POLL)
            out.append(log_action(logging.DEBUG, '%s: launched (pid %d); waiting for %s'
                                  % (proc.name, event.pid, proc.spec.pid_file)))
        else:
            self._running(proc, event.pid, event.started, now, out)
        self.dirty = True

    def _running(self, proc, pid, started, now, out):
        proc.pid, proc.started = pid, started
        self._set_deadline(proc, None)
        out.append(log_action(logging.INFO, '%s: %s (pid %d)' % (
            proc.name, 'started, not ready yet' if proc.spec.waits_for_ready else 'running',
            pid)))
        self._watch_readiness(proc, now, out)

    def _on_spawn_failed(self, event, now, out):
        proc = self.procs.get(event.name)
        if proc is None or proc.state != lc.STARTING:
            return
        proc.failures += 1
        delay = lc.failure_retry_delay(proc.failures)
        level = logging.ERROR if event.error != proc.error else logging.DEBUG
        out.append(log_action(level, '%s: cannot start: %s (next try in %g s)'
                              % (proc.name, event.error, delay)))
        proc.error = event.error
        self._move(proc, lc.FAILED, now)
        self._set_deadline(proc, now + delay)

    def _on_daemon_found(self, event, now, out):
        proc = self.procs.get(event.name)
        if proc is not None and proc.state == lc.STARTING and proc.launch:
            self._running(proc, event.pid, event.started, now, out)

    def _on_daemon_not_found(self, event, now, out):
        proc = self.procs.get(event.name)
        if proc is None or proc.state != lc.STARTING or not proc.launch:
            return
        if now < proc.launch.give_up_at and not event.final:
            self._set_deadline(proc, now + DAEMON_POLL)
            return
        proc.error = '%s: %s' % (proc.spec.pid_file, event.reason) if event.final else \
            '%s did not name a live process within %g s (%s)' % (proc.spec.pid_file,
                                                                 DAEMON_WAIT, event.reason)
        out.append(log_action(logging.ERROR, '%s: %s' % (proc.name, proc.error)))
        out.append(self._end_launch(proc))
        self._ended(proc, now, out)

    def _launch_action(self, kind, proc):
        """FindDaemon or EndLaunch; a launcher already reaped is named as 0 (its pid
        may be anyone's now)."""
        launcher = 0 if proc.launch.exited else proc.launch.pid
        return kind(proc.name, proc.spec.pid_file, launcher,
                    (proc.launch.started or (0, 0))[0], self.confine)

    def _end_launch(self, proc):
        return self._launch_action(act.EndLaunch, proc)
