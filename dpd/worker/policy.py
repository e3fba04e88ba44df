"""The worker's policy: the processes a file asks for versus those that run.

Pure: `handle(event, now)` returns actions and reads neither clock nor disk,
so every decision (restart limits, stops, edits, adoption) is tested with a
fake clock and no processes. `now` is `time.monotonic()`.
"""
import logging
import signal

from ..deadlines import Deadlines
from ..policy import Policy, log_action
from . import actions as act
from . import events as ev
from . import lifecycle as lc
from .lifecycle import describe_exit
from .records import proc_from_record, proc_record

DAEMON_WAIT = 10.0        # for a `daemon: true` launcher to leave a live pid in its pid file
DAEMON_POLL = 0.05
GROUP_POLL = 0.05         # while the leader is gone but its group is not
KILL_GRACE = 5.0          # after KILL, how long a process may take to vanish
USAGE_INTERVAL = 15.0     # memory and CPU of every tree are read this often
USAGE = ('usage',)        # the timer that reads them (no process has a tuple for a name)


class WorkerPolicy(Policy):
    def __init__(self):
        super().__init__({
            ev.PreviousRun: self._on_previous_run,
            ev.ConfigLoaded: self._on_config_loaded,
            ev.ConfigRejected: self._on_config_rejected,
            ev.ProcessStarted: self._on_started,
            ev.SpawnFailed: self._on_spawn_failed,
            ev.ProcessExited: self._on_exited,
            ev.TreeEmptied: self._on_tree_emptied,
            ev.UsageSampled: self._on_usage,
            ev.DaemonFound: self._on_daemon_found,
            ev.DaemonNotFound: self._on_daemon_not_found,
            ev.GroupChecked: self._on_group_checked,
            ev.SignalReceived: self._on_signal,
            ev.ThreadCrashed: self._on_thread_crashed,
            ev.Tick: self._on_tick,
        })
        self.procs = {}                   # name -> Proc, in the file's order
        self.config = None
        self.config_errors = ()
        self.shutting_down = False
        self._active = 0                  # processes in an ACTIVE state (counted by _move)
        self.timers = Deadlines()         # process name -> its one timer

    def next_deadline(self):
        return self.timers.nearest()

    @property
    def confine(self):
        """Where root may open files for this file (None: anywhere; SPEC 5.1)."""
        return self.config.confine if self.config else None

    # ------------------------------------------------------------ config

    def _on_previous_run(self, event, now, out):
        for record in event.adopted:
            proc = proc_from_record(record)
            proc.pid, proc.started = record['pid'], record['started']
            self._move(proc, lc.RUNNING, proc.since)
            self.procs[proc.name] = proc
            out.append(log_action(logging.INFO, '%s: adopted (pid %d), left running by the '
                                  'previous worker' % (proc.name, proc.pid)))
        for record in event.finished:
            proc = proc_from_record(record)
            self._move(proc, lc.EXITED, proc.since)
            self.procs[proc.name] = proc
        self.dirty = True

    def _on_config_loaded(self, event, now, out):
        if self.shutting_down:
            return
        config = event.config
        for warning in config.warnings:
            out.append(log_action(logging.WARNING, warning))
        if self.config_errors:
            out.append(log_action(logging.INFO, '%s: valid again; applying it' % config.path))
        self.config, self.config_errors, self.dirty = config, (), True
        if self.timers.get(USAGE) is None:
            self.timers.set(USAGE, now + USAGE_INTERVAL)
        wanted = {spec.name: spec for spec in config.procs}
        for name in [name for name in self.procs if name not in wanted]:
            self._remove(self.procs[name], now, out)
        ordered = {}
        for spec in config.procs:
            proc = self.procs.get(spec.name)
            if proc is None:
                proc = lc.Proc(spec)
                self.procs[spec.name] = proc
                self._start(proc, now, out)
            else:
                self._apply_definition(proc, spec, now, out)
            ordered[spec.name] = proc
        # keep the file's order; processes still stopping for removal go last
        self.procs = {**ordered, **{n: p for n, p in self.procs.items() if n not in ordered}}

    def _apply_definition(self, proc, spec, now, out):
        if proc.state == lc.STOPPING and proc.stop.then in (lc.THEN_REMOVE, lc.THEN_START):
            # already going down, for a removal or an earlier edit: once it is down,
            # start what the file says now
            proc.stop.then, proc.stop.next_spec = lc.THEN_START, spec
            return
        if spec.fingerprint == proc.fingerprint:
            proc.spec = spec                 # adopted records lack `env`; the file has it
            if proc.state == lc.FAILED:
                self._start(proc, now, out)  # a reload is the moment to try again
            return
        out.append(log_action(logging.INFO, '%s: definition changed' % spec.name))
        if proc.state in lc.ACTIVE:
            self._stop(proc, now, out, then=lc.THEN_START, next_spec=spec)
        else:
            self._renew(proc, spec)
            self._start(proc, now, out)

    @staticmethod
    def _renew(proc, spec):
        """A new definition is a new process: a fresh restart window and counters."""
        proc.spec, proc.fingerprint = spec, spec.fingerprint
        proc.window, proc.restarts, proc.failures, proc.error = lc.RestartWindow(), 0, 0, None
        proc.last_exit = None

    def _on_config_rejected(self, event, now, out):
        self.config_errors, self.dirty = tuple(event.messages), True
        running = sum(1 for p in self.procs.values() if p.state in lc.ACTIVE)
        for message in event.messages:
            out.append(log_action(logging.ERROR, message))
        out.append(log_action(logging.ERROR, 'configuration rejected; the %d running processes are '
                              'left as they are' % running))

    # ------------------------------------------------------------ starting

    def _start(self, proc, now, out, counted=True):
        """Start now, unless a counted start would break the restart limit."""
        if self.shutting_down:
            return
        proc.counted = counted
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
        proc.failures, proc.error = 0, None
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
        self._move(proc, lc.RUNNING, now)
        self._set_deadline(proc, None)
        out.append(log_action(logging.INFO, '%s: running (pid %d)' % (proc.name, pid)))

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

    # ------------------------------------------------------------ ending

    def _on_exited(self, event, now, out):
        proc = self.procs.get(event.name)
        if proc is None:
            return
        if proc.launch and event.pid == proc.launch.pid and proc.pid is None:
            self._launcher_exited(proc, event, now, out)
            return
        if event.pid != proc.pid or proc.state not in (lc.RUNNING, lc.STOPPING):
            return
        proc.last_exit = {'code': event.code, 'signal': event.signal, 'at': now}
        if event.oom:
            proc.last_exit['oom'] = lc.oom_text(proc.spec.limits)
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
        if event.code != 0:
            proc.last_exit = {'code': event.code, 'signal': event.signal, 'at': now}
            out.append(log_action(logging.WARNING, '%s: launcher %s before the daemon was up'
                                  % (proc.name, describe_exit(event))))
            self._ended(proc, now, out)

    def _ended(self, proc, now, out, crashed=True):
        """The process ended without being asked to: restart it, or leave it `exited`."""
        self._release(proc, out)
        if proc.spec.restart and not self.shutting_down:
            self._start(proc, now, out, counted=crashed)
        else:
            self._move(proc, lc.EXITED, now)
            self._set_deadline(proc, None)

    def _release(self, proc, out):
        if proc.spec.write_pid and proc.spec.pid_file and proc.pid:
            out.append(act.RemovePidFile(proc.spec.pid_file, proc.pid, self.confine))
        proc.pid = proc.started = proc.launch = None
        self.dirty = True

    # ------------------------------------------------------------ stopping

    def _remove(self, proc, now, out):
        if proc.state in lc.ACTIVE:
            self._stop(proc, now, out, then=lc.THEN_REMOVE)
        else:
            self._forget(proc, out)

    def _forget(self, proc, out):
        del self.procs[proc.name]
        self.timers.set(proc.name, None)
        out.append(act.CloseOutput(proc.name))
        out.append(act.RemoveTree(proc.name))
        out.append(log_action(logging.INFO, '%s: removed' % proc.name))
        self.dirty = True

    def _stop(self, proc, now, out, then=lc.THEN_NOTHING, next_spec=None):
        if proc.state == lc.STOPPING:
            proc.stop.then, proc.stop.next_spec = then, next_spec
            return
        target = proc.pid or (proc.launch and proc.launch.pid)
        if proc.state == lc.STARTING and not target:
            # the spawn is answered at once; nothing runs yet
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
        self._maybe_exit(out)

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

    # ------------------------------------------------------------ signals, timers

    def _on_signal(self, event, now, out):
        signum = event.signum
        if signum in (signal.SIGTERM, signal.SIGINT):
            self._shutdown(now, out)
        elif signum == signal.SIGQUIT:
            alive = sum(1 for p in self.procs.values() if p.state in lc.ACTIVE)
            out.append(log_action(logging.INFO, 'QUIT: exiting now, leaving %d processes running '
                                  'for the next worker to adopt' % alive))
            self.dirty = False
            out.append(act.WriteState(self.snapshot(now)))
            out.append(act.Exit(0, leave_running=True))
        elif signum == signal.SIGHUP and not self.shutting_down:
            out.append(log_action(logging.INFO, 'HUP: reloading the configuration'))
            out.append(act.ReloadConfig())
        elif signum == signal.SIGUSR1:
            out.append(act.ReopenLogs())

    def _shutdown(self, now, out):
        if self.shutting_down:
            out.append(log_action(logging.WARNING, 'second stop signal: killing every process now'))
            for proc in self.procs.values():
                if proc.state == lc.STOPPING and not proc.stop.killed:
                    proc.stop.limit = now
                    self._set_deadline(proc, now)
            return
        self.shutting_down, self.dirty = True, True
        out.append(act.Notify('STOPPING=1'))
        active = [p for p in self.procs.values() if p.state in lc.ACTIVE]
        out.append(log_action(logging.INFO, 'stopping %d processes' % len(active)))
        for proc in active:
            self._stop(proc, now, out)
        for proc in self.procs.values():
            if proc.state in (lc.BACKOFF, lc.FAILED):
                self._set_deadline(proc, None)
        self._maybe_exit(out)

    def _maybe_exit(self, out):
        if self.shutting_down and not self._active:
            out.append(log_action(logging.INFO, 'every process stopped; exiting'))
            out.append(act.Exit(0))

    def _on_thread_crashed(self, event, now, out):
        out.append(log_action(logging.CRITICAL, 'thread %s crashed: %s; exiting and leaving '
                              'the processes running for the next worker'
                              % (event.thread, event.error)))
        out.append(act.WriteState(self.snapshot(now)))
        out.append(act.Exit(1, leave_running=True))

    def _on_tick(self, event, now, out):
        for name in self.timers.pop_due(now):
            if name == USAGE:
                self._sample_usage(now, out)
                continue
            proc = self.procs[name]
            if proc.state in (lc.BACKOFF, lc.FAILED):
                self._start(proc, now, out)
            elif proc.state == lc.STOPPING:
                self._on_stop_deadline(proc, now, out)
            elif proc.state == lc.STARTING and proc.launch:
                out.append(self._launch_action(act.FindDaemon, proc))

    def _sample_usage(self, now, out):
        self.timers.set(USAGE, now + USAGE_INTERVAL)
        pids = {p.name: p.pid for p in self.procs.values() if p.state in lc.ACTIVE and p.pid}
        if pids:
            out.append(act.SampleUsage(pids))

    def _on_usage(self, event, now, out):
        for name, usage in event.usage.items():
            proc = self.procs.get(name)
            if proc is not None and usage != proc.usage:
                proc.usage, self.dirty = usage, True

    # ------------------------------------------------------------ helpers

    def _launch_action(self, kind, proc):
        return kind(proc.name, proc.spec.pid_file, proc.launch.pid,
                    (proc.launch.started or (0, 0))[0], self.confine)

    def _end_launch(self, proc):
        return self._launch_action(act.EndLaunch, proc)

    def _move(self, proc, state, now):
        was = proc.state
        if proc.move(state, now):
            self._active += (state in lc.ACTIVE) - (was in lc.ACTIVE)
            self.dirty = True

    def _set_deadline(self, proc, deadline):
        self.timers.set(proc.name, deadline)

    def snapshot(self, now=None):
        """Everything the state file shows, and what the next worker needs to adopt."""
        return {'config': self.config_record(), 'shutting_down': self.shutting_down,
                'procs': [proc_record(proc, self.timers.get(proc.name))
                          for proc in self.procs.values()]}
