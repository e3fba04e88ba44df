"""The worker's executor: the one place that starts, signals and cleans up."""
import logging
import os
import pwd
import signal
import subprocess

from .. import procfs, safefile, state
from ..executor import DaemonExecutor
from . import actions as act
from . import events as ev
from . import journal, spawn
from .journal import Journal

log = logging.getLogger('dpd')


class WorkerExecutor(DaemonExecutor):
    program = 'dpd-workerd'

    def __init__(self, reload_config, reaper, outputs, daemon_log, state_file):
        super().__init__(reload_config, daemon_log, state_file)
        self.reaper, self.outputs = reaper, outputs
        self.journal = Journal(journal.path_of(state_file))
        self.descriptors = spawn.DescriptorLimit()
        self._groups = {}                   # pid -> its process group, seen while it lived
        self.handles({
            act.Spawn: self._spawn,
            act.FindDaemon: self._find_daemon,
            act.EndLaunch: self._end_launch,
            act.SendSignal: self._send_signal,
            act.CheckGroup: self._check_group,
            act.RemovePidFile: self._remove_pid_file,
            act.CloseOutput: self._close_output,
        })

    def state_body(self, snapshot):
        return state.worker_body(snapshot)

    # ------------------------------------------------------------ processes

    def _spawn(self, action):
        spec, pid_slot, output = action.spec, None, subprocess.DEVNULL
        try:
            who = spawn.identity(spec)
            spawn.check_paths(spec)
            if spec.write_pid and spec.pid_file:
                pid_slot = safefile.PidFileSlot(spec.pid_file, action.confine)
            output = self._output_fd(spec, who, action.confine)
            self.descriptors.make_room(output)
            with self.reaper.spawning():
                child = spawn.start(spec, who, output, action.confine,
                                    self.descriptors.for_children())
                self.reaper.watch_child(spec.name, child)
            if pid_slot is not None:
                self._write_pid(pid_slot, child.pid)
        except (spawn.SpawnError, OSError) as err:
            return [ev.SpawnFailed(spec.name, reason(err))]
        finally:
            if output != subprocess.DEVNULL:
                os.close(output)
            if pid_slot is not None:
                pid_slot.close()
        started = procfs.identity(child.pid)
        self._journal_start(spec, child.pid, started)
        return [ev.ProcessStarted(spec.name, child.pid, started)]

    def _journal_start(self, spec, pid, started):
        """On disk before the next start (SPEC 5.2): a `daemon: true` program is a
        launch, whose daemon is not known yet."""
        entry = {'name': spec.name, 'fingerprint': spec.fingerprint,
                 'definition': spec.public_record}
        if spec.daemon:
            entry['launch'] = [pid] + list(started or (0, 0))
        else:
            entry.update(pid=pid, started=started)
        try:
            self.journal.record(entry)
        except OSError as err:
            log.error('cannot record the start of %s in %s: %s', spec.name,
                      self.journal.path, err)

    def write_state(self, snapshot):
        if not super().write_state(snapshot):
            return False
        self.journal.clear()              # the state file holds every start now
        return True

    @staticmethod
    def _write_pid(slot, pid):
        try:
            slot.write(pid)
        except OSError as err:
            _kill_group(pid, signal.SIGKILL)  # it must not run unrecorded; the reaper reaps it
            raise spawn.SpawnError('cannot write pid file %s: %s' % (slot.path, reason(err))) \
                from None

    def _output_fd(self, spec, who, confine):
        if spec.logs is None:
            return subprocess.DEVNULL
        channel = self.outputs.attach(spec.name, spec.logs, {os.geteuid(), who.uid}, confine)
        return channel.child_fd()

    def _find_daemon(self, action):
        """The daemon a launcher left, if its pid file names one of the launch's own
        descendants: a pid of anyone else's process is never adopted or signalled."""
        try:
            pid = safefile.read_pid_file(action.pid_file, action.confine)
        except OSError as err:
            return [ev.DaemonNotFound(action.name, reason(err), final=True)]
        if pid is None:
            return [ev.DaemonNotFound(action.name, 'no pid in it yet')]
        started = procfs.identity(pid)
        if started is None:
            return [ev.DaemonNotFound(action.name, 'pid %d is not running' % pid)]
        if started[0] < action.not_before or not self._launched_by(pid, action):
            return [ev.DaemonNotFound(action.name, 'pid %d is not a process the launcher '
                                      'started' % pid, final=True)]
        if not self.reaper.watch_process(action.name, pid) or procfs.identity(pid) != started:
            return [ev.DaemonNotFound(action.name, 'pid %d ended' % pid)]
        return [ev.DaemonFound(action.name, pid, started)]

    def _end_launch(self, action):
        _kill_group(action.launcher, signal.SIGKILL)      # our child: its pid is still ours
        try:
            pid = safefile.read_pid_file(action.pid_file, action.confine)
        except OSError:
            return
        started = procfs.identity(pid) if pid else None
        if started and started[0] >= action.not_before and self._launched_by(pid, action):
            log.warning('%s: killing pid %d, the daemon its launch left', action.name, pid)
            _kill_group(self._group_of(pid), signal.SIGKILL)
            os.kill(pid, signal.SIGKILL)

    def _launched_by(self, pid, action):
        """`pid` descends from the launcher: its ancestors lead to the launcher, or
        (the launcher gone) to this worker, its subreaper, through an orphan that is
        not another process of ours."""
        lineage = procfs.ancestors(pid)
        if action.launcher in lineage:
            return True
        if os.getpid() not in lineage:
            return False
        below_us = ([pid] + lineage)[lineage.index(os.getpid())]
        return self.reaper.name_of(below_us) in (None, action.name)

    def _send_signal(self, action):
        if action.group:
            _kill_group(self._group_of(action.pid), action.signum)
        elif action.pid > 1:
            try:
                os.kill(action.pid, action.signum)
            except ProcessLookupError:
                pass

    def _group_of(self, pid):
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
        pgid = self._groups.get(action.pgid, action.pgid)
        alive = pgid > 1 and procfs.group_alive(pgid)
        if not alive:
            self._groups.pop(action.pgid, None)
        return [ev.GroupChecked(action.name, action.pgid, alive)]

    def _remove_pid_file(self, action):
        safefile.remove_pid_file(action.path, action.pid, action.confine)

    def _close_output(self, action):
        self.outputs.close(action.name)

    def adopt(self, previous, confine):
        """Watch what the previous worker left running; drop what already ended;
        end the launches it left half done (they start afresh)."""
        for record in previous.leftovers:
            pid, started = record['launch']
            log.warning('%s: ending the launch (pid %d) the previous worker left unfinished',
                        record['name'], pid)
            if procfs.is_alive(pid, started):
                _kill_group(pid, signal.SIGKILL)
        kept = []
        for record in previous.adopted:
            if not self.reaper.watch_process(record['name'], record['pid']):
                continue
            if not procfs.is_alive(record['pid'], record['started']):
                continue  # it ended between the check and the watch; its pid was reused
            logs = record['definition']['logs']
            if logs:
                try:
                    self.outputs.attach(record['name'], logs, _owners(record['definition']),
                                        confine, via_pid=record['pid'])
                except OSError as err:
                    log.error('%s: cannot reattach its output to %s: %s',
                              record['name'], logs, err)
            kept.append(record)
        return ev.PreviousRun(tuple(kept), previous.finished)

    def _reopen_logs(self, action):
        self.outputs.reopen_all()
        super()._reopen_logs(action)


def reason(err):
    """An error as a person wants to read it: "PATH: Permission denied"."""
    if isinstance(err, OSError) and err.strerror:
        return '%s: %s' % (err.filename, err.strerror) if err.filename else err.strerror
    return str(err)


def _owners(definition):
    owners = {os.geteuid()}
    try:
        owners.add(pwd.getpwnam(definition['user']).pw_uid)
    except KeyError:
        pass
    return owners


def _kill_group(pgid, signum):
    if pgid <= 1:
        return  # killpg(0) is our own group, killpg(1) everything init leads
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        pass
