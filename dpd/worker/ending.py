"""How the worker's policy sees processes end, and ends them: exits (restart or
`exited`), stops (signal, timeout, KILL, the group or tree empty), removals.
When the file goes away or the worker stops, what depends on a process is
stopped before it (SPEC 6.1): its own stop waits.

A part of WorkerPolicy (policy.py), written apart so each reads alone: it
uses the policy's `procs`, `timers`, `_move`, `_set_deadline` and `_start`.
"""
import logging
import signal

from ..policy import log_action
from . import actions as act
from . import lifecycle as lc
from .lifecycle import describe_exit
from .readiness import health_timer

GROUP_POLL = 0.05         # while the leader is gone but its group is not
KILL_GRACE = 5.0          # after KILL, how long a process may take to vanish


class Ending:
    def _on_exited(self, event, now, out):
        proc = self.procs.get(event.name)
        if proc is None:
            return
        if proc.launch and event.pid == proc.launch.pid and proc.pid is None:
            self._launcher_exited(proc, event, now, out)
            return
        if event.pid != proc.pid or proc.state not in lc.ACTIVE:
            return                       # (starting: it died before it was ready)
        last_exit = {'code': event.code, 'signal': event.signal, 'at': now}
        if event.oom:
            last_exit['oom'] = lc.oom_text(proc.spec.limits)
        proc.last_exit = last_exit      # whole before it is set: records share it
        if proc.state == lc.STOPPING:
            proc.stop.awaiting_group = True
            out.append(act.CheckGroup(proc.name, proc.pid))
            return
        out.append(log_action(logging.WARNING if proc.spec.restart else logging.INFO,
                              '%s: %s' % (proc.name, describe_exit(event, proc.spec.limits))))
        self._ended(proc, now, out, crashed=event.oom or lc.is_crash(event.signal))

    def _launcher_exited(self, proc, event, now, out):
        """A `daemon: true` program ended before its pid file named the daemon: fine
        if it succeeded (the pid file is being polled), a failed start if not."""
        proc.launch.exited = True
        if event.code != 0:
            proc.last_exit = {'code': event.code, 'signal': event.signal, 'at': now}
            out.append(log_action(logging.WARNING, '%s: launcher %s before the daemon was up'
                                  % (proc.name, describe_exit(event))))
            self._ended(proc, now, out)

    def _ended(self, proc, now, out, crashed=True):
        """The process ended without being asked to: restart it, or leave it `exited`."""
        if proc.state == lc.STARTING:
            self._ended_before_ready(proc)      # a restart waiting for this run failed
        self._release(proc, out)
        if proc.spec.restart and not self.shutting_down:
            self._start(proc, now, out, counted=crashed)
        else:
            self._move(proc, lc.EXITED, now)
            self._set_deadline(proc, None)
            self._start_dependents(proc, now, out)     # a one-shot that succeeded

    def _release(self, proc, out):
        if proc.spec.write_pid and proc.spec.pid_file and proc.pid:
            out.append(act.RemovePidFile(proc.spec.pid_file, proc.pid, self.confine))
        if proc.health is not None:
            proc.check_seq = proc.health.seq
            if proc.health.running_since is not None:
                out.append(act.KillCheck(proc.name))    # its check goes with it
        proc.early_notice = {}
        proc.pid = proc.started = proc.launch = proc.health = None
        self.timers.set(health_timer(proc.name), None)
        self.dirty = True

    # ------------------------------------------------------------ stopping

    def _remove(self, proc, now, out):
        if proc.state in lc.ACTIVE:
            self._stop(proc, now, out, then=lc.THEN_REMOVE)
        else:
            self._forget(proc, out)

    def _forget(self, proc, out):
        del self.procs[proc.name]
        self.table_changed()
        self.timers.set(proc.name, None)
        out.append(act.Forget(proc.name))
        out.append(log_action(logging.INFO, '%s: removed' % proc.name))
        self.dirty = True

    def _stop(self, proc, now, out, then=lc.THEN_NOTHING, next_spec=None):
        if proc.state == lc.STOPPING:
            proc.stop.then, proc.stop.next_spec = then, next_spec
            return
        if then in (lc.THEN_NOTHING, lc.THEN_REMOVE) and self._running_dependents(proc):
            self.deferred[proc.name] = then     # after what depends on it
            return
        target = proc.pid or (proc.launch and not proc.launch.exited and proc.launch.pid)
        if proc.state == lc.STARTING and not target:
            # nothing of ours runs yet (the spawn is answered at once), or only a daemon
            # its pid file does not name yet: whatever the launch left is ended now
            if proc.launch:
                out.append(log_action(logging.INFO, '%s: stopping (its launch: %s names no '
                                      'daemon yet)' % (proc.name, proc.spec.pid_file)))
                out.append(self._end_launch(proc))
            self._stopped(proc, lc.Stop(then, next_spec, now), now, out)
            return
        out.append(log_action(logging.INFO, '%s: stopping (pid %d, %s)'
                              % (proc.name, target, signal.Signals(proc.spec.stop_signal).name)))
        if proc.pid is None:                # a daemon not found yet: end its launch
            out.append(self._end_launch(proc))
        else:
            out.append(act.SendSignal(proc.name, target, proc.spec.stop_signal))
            out.append(act.SendSignal(proc.name, target, signal.SIGCONT))
        proc.pid = target
        self._move(proc, lc.STOPPING, now)
        proc.stop = lc.Stop(then, next_spec, now + proc.spec.stop_timeout)
        self._set_deadline(proc, proc.stop.limit)

    def _on_group_checked(self, event, now, out):
        proc = self.procs.get(event.name)
        if proc is None or proc.state != lc.STOPPING or event.pgid != proc.pid:
            return
        if event.alive:
            self._set_deadline(proc, min(proc.stop.limit, now + GROUP_POLL))
        else:
            self._stopped(proc, proc.stop, now, out)

    def _stopped(self, proc, stop, now, out):
        self._release(proc, out)
        self._move(proc, lc.STOPPED, now)
        self._set_deadline(proc, None)
        out.append(log_action(logging.INFO, '%s: stopped' % proc.name))
        if stop.then == lc.THEN_REMOVE:
            self._forget(proc, out)
        elif stop.then == lc.THEN_START:
            self._renew(proc, stop.next_spec)
            self._start(proc, now, out)
        elif stop.then == lc.THEN_RESTART:
            self._start(proc, now, out, counted=True)    # unhealthy: as after a crash
        elif stop.then == lc.THEN_COMMAND:
            self._start(proc, now, out, counted=False)   # an operator's: not a crash
        self._stop_deferred(now, out)
        self._maybe_exit(out)

    def _running_dependents(self, proc):
        return [other for other in self.dependents(proc.name) if other.state in lc.ACTIVE]

    def _stop_deferred(self, now, out):
        """Stops that waited for what depends on them, once it is down."""
        for name, then in list(self.deferred.items()):
            proc = self.procs.get(name)
            if proc is None or proc.state not in lc.ACTIVE:
                del self.deferred[name]
                if proc is not None and then == lc.THEN_REMOVE:
                    self._forget(proc, out)
            elif not self._running_dependents(proc):
                del self.deferred[name]
                self._stop(proc, now, out, then)

    def _on_stop_deadline(self, proc, now, out):
        stop = proc.stop
        if now >= stop.limit:
            if stop.killed:
                out.append(log_action(logging.ERROR, '%s: pid %d survived KILL for %g s (stuck in '
                                      'the kernel?); no longer waiting for it'
                                      % (proc.name, proc.pid, KILL_GRACE)))
                self._stopped(proc, stop, now, out)
                return
            signame = signal.Signals(proc.spec.stop_signal).name
            out.append(log_action(logging.WARNING, '%s: still running %g s after %s; sending '
                                  'KILL to its group' % (proc.name, proc.spec.stop_timeout,
                                                         signame)))
            out.append(act.SendSignal(proc.name, proc.pid, signal.SIGKILL))
            stop.killed, stop.limit = True, now + KILL_GRACE
        if stop.awaiting_group:
            out.append(act.CheckGroup(proc.name, proc.pid))  # its answer sets the next deadline
        else:
            self._set_deadline(proc, stop.limit)
