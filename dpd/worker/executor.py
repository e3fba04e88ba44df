"""The worker's executor: the one place that starts, signals and cleans up.

Starting is `starter.py`; finding and ending `daemon: true` launches is
`launches.py`; taking over what a previous worker left is `adoption.py`.
"""
import logging
import os
import signal

from .. import procfs, safefile, state
from ..digest import sha256_hex
from ..executor import DaemonExecutor
from ..record import Record
from . import actions as act
from . import events as ev
from . import journal
from .journal import Journal
from .launches import Launches
from .metricsfile import MetricsFile
from .output import log_owners
from .probes import Notifications
from .starter import Starter, kill_group

log = logging.getLogger('dpd')


class Threads(Record):
    """The worker's observers the executor hands work to."""
    reaper: object
    outputs: object       # output.Outputs (its pump thread)
    prober: object


class WorkerExecutor(DaemonExecutor):
    """Housekeeping that no start waits for (a log line; the pid file of a process
    that ended, removed only if it still names that pid, so a no-op once the next
    start wrote its own) is done after the batch's starts: the exit line and the
    old pid file cost a restart 0.4 ms before the new process ran. It is done
    before the state file is written and before an answer to dpd-ctl, so what
    others read is never ahead of the log."""
    program = 'dpd-workerd'
    LATER = (act.Log, act.RemovePidFile)
    AFTER_LATER = (act.WriteState, act.Reply)

    def __init__(self, reload_config, threads, trees, daemon_log, state_file):
        super().__init__(reload_config, daemon_log, state_file)
        reaper, self.outputs, self.prober = threads.reaper, threads.outputs, threads.prober
        self.reaper, self.trees = reaper, trees
        self.journal = Journal(journal.path_of(state_file))
        self.notifications = Notifications(self.prober, notify_prefix(state_file))
        self.starter = Starter(reaper, self.outputs, trees, self.journal, self.notifications)
        self.launches = Launches(reaper, self.group_of, self.starter.marks, trees)
        self._groups = {}                   # pid -> its process group, seen while it lived
        self._later = []                    # LATER actions of this batch, in order
        self.metrics_file = MetricsFile()
        self._shown = state.WallTimes('name', self._shown_proc, self._cgroup_unchanged)
        self.handles({
            act.Spawn: self.starter.start,
            act.FindDaemon: self.launches.find,
            act.EndLaunch: self.launches.end,
            act.SendSignal: self._send_signal,
            act.CheckGroup: self._check_group,
            act.ClearTree: self._clear_tree,
            act.SampleUsage: self._sample_usage,
            act.RunCheck: self._run_check,
            act.KillCheck: self._kill_check,
            act.RemovePidFile: self._remove_pid_file,
            act.Forget: self._forget,
            act.StreamLog: self._stream_log,
        })

    def perform(self, action):
        if type(action) in self.LATER:
            self._later.append(action)
            return ()
        if type(action) in self.AFTER_LATER:
            self.end_batch()
        return super().perform(action)

    def end_batch(self):
        """The housekeeping held back, in the order it came: before a state write or
        an answer, and when the controller ends a batch of facts."""
        later, self._later = self._later, []
        for action in later:
            try:
                super().perform(action)
            except Exception:   # as for any action: the rest still happens
                log.exception('failed to perform %r', action)

    def state_body(self, snapshot):
        return state.worker_body(snapshot, self._shown.copies(snapshot['procs']))

    def _shown_proc(self, record, wall):
        copy = state.shown_proc(record, wall)
        copy['cgroup'] = self.trees.record(record['name'])
        return copy

    def _cgroup_unchanged(self, copy):
        return copy['cgroup'] == self.trees.record(copy['name'])

    def write_state(self, body):
        if not super().write_state(body):
            return False
        self.journal.clear()              # the state file holds every start now
        return True

    def publish_metrics(self, body, action):
        self.metrics_file.write(body, action.metrics_file, action.confine)

    # ------------------------------------------------------------ signals, groups, trees

    def _send_signal(self, action):
        """To every member of the process's tree (a grandchild that left the group
        with setsid too), or without one, to its group: each member once (a second
        TERM means "hurry" to some programs)."""
        if action.group:
            if not (self.trees.populated(action.name) and
                    self.trees.signal(action.name, action.signum)):
                kill_group(self.group_of(action.pid), action.signum)
        elif action.pid > 1:
            try:
                os.kill(action.pid, action.signum)
            except ProcessLookupError:
                pass

    def group_of(self, pid):
        """The group to signal for `pid`: its own when it leads one; a daemon's is
        usually led by the launcher's child that called setsid and then exited."""
        if pid not in self._groups:
            try:
                pgid = os.getpgid(pid)
            except ProcessLookupError:
                pgid = pid    # the leader is gone; its group may live on
            self._groups[pid] = pgid if pgid != os.getpgid(0) else -1
        return self._groups[pid]

    def _check_group(self, action):
        """Is anything of the process left: its group, or (with a cgroup) its tree?"""
        pgid = self._groups.get(action.pgid, action.pgid)
        alive = (pgid > 1 and procfs.group_alive(pgid)) or self.trees.populated(action.name)
        if not alive:
            self._groups.pop(action.pgid, None)
        return [ev.GroupChecked(action.name, action.pgid, alive)]

    def _clear_tree(self, action):
        """Leftovers of the last run (a grandchild that outlived it) are killed
        before the next start; TreeEmptied comes when they are gone. The tree is
        watched before it is looked at: one that empties in between is heard."""
        events_file = self.trees.events_file(action.name)
        if events_file is None:
            return [ev.TreeEmptied(action.name)]       # no cgroup: nothing can be left
        try:
            self.reaper.watch_tree(action.name, events_file)
        except FileNotFoundError:
            return [ev.TreeEmptied(action.name)]       # removed meanwhile: nothing left
        if not self.trees.populated(action.name):
            return [ev.TreeEmptied(action.name)]
        log.warning('%s: killing what its last run left in its cgroup', action.name)
        self.trees.signal(action.name, signal.SIGKILL)
        return []

    def _sample_usage(self, action):
        self.trees.remove_leftovers()       # every 15 s, as usage: the same beat
        return [ev.UsageSampled({name: self.trees.usage(name, pid)
                                 for name, pid in action.pids.items()})]

    # ------------------------------------------------------------ files

    def _remove_pid_file(self, action):
        safefile.remove_pid_file(action.path, action.pid, action.confine)

    def _stream_log(self, action):
        owners = log_owners(action.user)

        def opener(path):
            return os.fdopen(safefile.open_log_reader(path, owners, action.confine), 'rb')
        if self.control is not None:
            self.control.stream(action.number, action.path, action.lines, action.follow, opener)

    def _forget(self, action):
        self.outputs.close(action.name)
        self.trees.remove(action.name)
        self.notifications.forget(action.name)
        self.starter.marks.pop(action.name, None)

    # ------------------------------------------------------------ health checks

    def _run_check(self, action):
        probe = action.spec.health.probe
        if probe.kind == 'exec':
            return self.starter.start_check(action)
        self.prober.check(action.name, action.seq, probe, action.spec.health.timeout)
        return []

    def _kill_check(self, action):
        self.starter.kill_check(action.name)

    def _reopen_logs(self, action):
        self.outputs.reopen_all()
        super()._reopen_logs(action)


def notify_prefix(state_file):
    """The notify sockets' addresses, one worker's apart from another's."""
    return 'diprocd/' + sha256_hex(os.path.realpath(state_file).encode())[:16]
