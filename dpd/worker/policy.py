"""The worker's policy: the processes a file asks for versus those that run.

Pure: `handle(event, now)` returns actions and reads neither clock nor disk,
so every decision (restart limits, stops, edits, adoption) is tested with a
fake clock and no processes. `now` is `time.monotonic()`. In five parts:
this one (the file, signals, timers, the state), how processes start
(starting.py), how they get ready and stay healthy (readiness.py), how
they end (ending.py) and operators' commands (commands.py).
"""
import logging
import signal

from ..deadlines import Deadlines
from ..policy import Policy, log_action
from . import actions as act
from . import events as ev
from . import lifecycle as lc
from .commands import Commands
from .ending import Ending
from .records import proc_from_record, record_inputs, record_of
from .readiness import Readiness
from .starting import Starting

USAGE_INTERVAL = 15.0     # memory and CPU of every tree are read this often
USAGE = ('usage',)        # the timer that reads them (no process has a tuple for a name)


class WorkerPolicy(Starting, Readiness, Ending, Commands, Policy):
    def __init__(self):
        super().__init__({
            ev.PreviousRun: self._on_previous_run,
            ev.ConfigLoaded: self._on_config_loaded,
            ev.ConfigRejected: self._on_config_rejected,
            ev.ProcessStarted: self._on_started,
            ev.SpawnFailed: self._on_spawn_failed,
            ev.ProcessExited: self._on_exited,
            ev.TreeEmptied: self._on_tree_emptied,
            ev.CheckDone: self._on_check_done,
            ev.Notified: self._on_notified,
            ev.UsageSampled: self._on_usage,
            ev.DaemonFound: self._on_daemon_found,
            ev.DaemonNotFound: self._on_daemon_not_found,
            ev.GroupChecked: self._on_group_checked,
            ev.SignalReceived: self._on_signal,
            ev.ThreadCrashed: self._on_thread_crashed,
            ev.CommandReceived: self._on_command,
            ev.CommandGone: self._on_command_gone,
            ev.Tick: self._on_tick,
        })
        self.procs = {}                   # name -> Proc, in the file's order
        self._records = {}                # name -> (record_inputs, record) of the last snapshot
        self._dependents = None           # name -> the Procs whose `depends` name it
        self.config = None
        self.config_errors = ()
        self.shutting_down = False
        self._active = 0                  # processes in an ACTIVE state (counted by _move)
        self.timers = Deadlines()         # a process's name, health_timer(name), USAGE
        self.deferred = {}                # name -> then: stops waiting for dependents
        self.restarting = {}              # control connection -> PendingRestart

    def handle(self, event, now):
        out = super().handle(event, now)
        if self.restarting:
            self._answer_restarts(out)
        return out

    def next_deadline(self):
        return self.timers.nearest()

    def dependents(self, name):
        """The processes whose `depends` names `name`, from an index made again after
        any change of the table or of a definition (`table_changed`): a scan per
        process made the stop of a thousand processes a million steps."""
        if self._dependents is None:
            index = {}
            for proc in self.procs.values():
                for needed in proc.spec.depends:
                    index.setdefault(needed, []).append(proc)
            self._dependents = index
        return self._dependents.get(name, ())

    def table_changed(self):
        """A process came or went, or a definition changed."""
        self._dependents = None

    @property
    def confine(self):
        """Where root may open files for this file (None: anywhere; SPEC 5.1)."""
        return self.config.confine if self.config else None

    # ------------------------------------------------------------ config

    def _on_previous_run(self, event, now, out):
        for record in event.adopted:
            proc = proc_from_record(record)
            proc.pid, proc.started, proc.cgroup = record['pid'], record['started'], \
                record.get('cgroup')
            ready = record.get('state') != lc.STARTING
            self._move(proc, lc.RUNNING if ready else lc.STARTING, proc.since)
            self.procs[proc.name] = proc
            self.table_changed()
            out.append(log_action(logging.INFO, '%s: adopted (pid %d), left running by the '
                                  'previous worker' % (proc.name, proc.pid)))
            # its checks resume; a healthy process is not restarted for a new worker
            self._watch_readiness(proc, now, out, ready, record.get('health'))
        for record in event.finished:
            proc = proc_from_record(record)
            self._move(proc, lc.EXITED, proc.since)
            self.procs[proc.name] = proc
        self.table_changed()
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
        self.loaded_at = event.wall
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
                self.table_changed()
                self._start(proc, now, out)
            else:
                self._apply_definition(proc, spec, now, out)
            ordered[spec.name] = proc
        # keep the file's order; processes still stopping for removal go last
        self.procs = {**ordered, **{n: p for n, p in self.procs.items() if n not in ordered}}
        self.table_changed()                 # (the index keeps the table's order)

    def _apply_definition(self, proc, spec, now, out):
        self.deferred.pop(spec.name, None)   # in the file again: not to be removed
        if proc.state == lc.STOPPING and proc.stop.then in (lc.THEN_REMOVE, lc.THEN_START):
            # already going down, for a removal or an earlier edit: once it is down,
            # start what the file says now
            proc.stop.then, proc.stop.next_spec = lc.THEN_START, spec
            return
        if spec.fingerprint == proc.fingerprint:
            proc.spec = spec                 # adopted records lack `env`; the file has it
            self.table_changed()
            if proc.state == lc.FAILED:
                self._start(proc, now, out)  # a reload is the moment to try again
            return
        out.append(log_action(logging.INFO, '%s: definition changed' % spec.name))
        if proc.state in lc.ACTIVE:
            self._stop(proc, now, out, then=lc.THEN_START, next_spec=spec)
        else:
            self._renew(proc, spec)
            self._start(proc, now, out)

    def _renew(self, proc, spec):
        """A new definition is a new process: a fresh restart window and counters."""
        proc.spec, proc.fingerprint = spec, spec.fingerprint
        self.table_changed()
        proc.window, proc.restarts, proc.failures, proc.error = lc.RestartWindow(), 0, 0, None
        proc.last_exit = None

    def _on_config_rejected(self, event, now, out):
        self.config_errors, self.dirty = tuple(event.messages), True
        running = sum(1 for p in self.procs.values() if p.state in lc.ACTIVE)
        for message in event.messages:
            out.append(log_action(logging.ERROR, message))
        out.append(log_action(logging.ERROR, 'configuration rejected; the %d running processes are '
                              'left as they are' % running))

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
            out.append(self.state_action(now))
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
        out.append(self.state_action(now))
        out.append(act.Exit(1, leave_running=True))

    def _on_tick(self, event, now, out):
        for key in self.timers.pop_due(now):
            if key == USAGE:
                self._sample_usage(now, out)
            elif isinstance(key, tuple):            # health_timer(name)
                self._health_due(key[1], now, out)
            else:
                self._process_due(self.procs[key], now, out)

    def _process_due(self, proc, now, out):
        if proc.state in (lc.BACKOFF, lc.FAILED):
            self._start(proc, now, out)
        elif proc.state == lc.STOPPING:
            self._on_stop_deadline(proc, now, out)
        elif proc.state == lc.STARTING and proc.launch:
            out.append(self._launch_action(act.FindDaemon, proc))

    def _sample_usage(self, now, out):
        """Usage, and the state and metrics files rewritten even if nothing moved:
        their age then tells a live worker from a dead one (SPEC 6.4)."""
        self.timers.set(USAGE, now + USAGE_INTERVAL)
        self.dirty = True
        pids = {p.name: p.pid for p in self.procs.values() if p.state in lc.ACTIVE and p.pid}
        if pids:
            out.append(act.SampleUsage(pids))

    def _on_usage(self, event, now, out):
        for name, usage in event.usage.items():
            proc = self.procs.get(name)
            if proc is not None and usage != proc.usage:
                proc.usage, self.dirty = usage, True

    # ------------------------------------------------------------ helpers

    def _move(self, proc, state, now):
        was = proc.state
        if proc.move(state, now):
            self._active += (state in lc.ACTIVE) - (was in lc.ACTIVE)
            self.dirty = True

    def _set_deadline(self, proc, deadline):
        self.timers.set(proc.name, deadline)

    def state_action(self, now):
        """WriteState, and the metrics file written from the same snapshot."""
        config = self.config
        return act.WriteState(self.snapshot(now), config.metrics_file if config else None,
                              self.confine)

    def snapshot(self, now=None):
        """Everything the state file shows, and what the next worker needs to adopt.
        A process whose record inputs are unchanged gets the very record of the last
        snapshot (so a state write costs what changed): never modify one."""
        known, records = self._records, {}
        for proc in self.procs.values():
            name = proc.name
            inputs = record_inputs(proc, self.timers.get(name),
                                   self._waits_for(proc) if proc.state == lc.WAITING else ())
            hit = known.get(name)
            if hit is None or hit[0] != inputs:
                hit = (inputs, record_of(inputs))
            records[name] = hit
        self._records = records
        return {'config': self.config_record(), 'shutting_down': self.shutting_down,
                'procs': [record for _, record in records.values()]}
