"""`daemon: true`: finding the daemon a launcher left, and ending a launch.

A pid in a file proves nothing, and a file the service's user writes can
name anyone's process: its pid is accepted only if that process descends
from the launch (SPEC 5.2), never adopted or signalled otherwise.
"""
import logging
import os
import signal

from .. import procfs, safefile
from . import events as ev
from .journal import SPAWN_MARK
from .starter import kill_group, reason

log = logging.getLogger('dpd')


class Launches:
    def __init__(self, reaper, group_of, marks):
        self.reaper, self.group_of = reaper, group_of
        self.marks = marks                # name -> the mark its start carried (no cgroups)

    def find(self, action):
        """The daemon the launch left: DaemonFound or DaemonNotFound."""
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

    def end(self, action):
        """KILL the launcher's group, and the daemon its launch left if it descends
        from the launch: no duplicate when the next launch runs. (With cgroups the
        stop empties the whole tree; this is for a worker without.)"""
        if action.launcher:
            kill_group(action.launcher, signal.SIGKILL)  # our child, not reaped: still ours
        for pid in self._left_by(action):
            if self._launched_by(pid, action):
                log.warning('%s: killing pid %d, the daemon its launch left', action.name, pid)
                kill_group(self.group_of(pid), signal.SIGKILL)
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def _left_by(self, action):
        """What the launch may have left running: the pid its pid file names, and
        the processes that carry its start's mark in their environment (a daemon
        that has not written its pid file yet)."""
        pids = []
        try:
            pid = safefile.read_pid_file(action.pid_file, action.confine)
        except OSError:
            pid = None
        started = procfs.identity(pid) if pid else None
        if started and started[0] >= action.not_before:
            pids.append(pid)
        mark = self.marks.get(action.name)
        if mark is not None:
            pids += [p for p in procfs.pids_marked(SPAWN_MARK, (mark,)) if p not in pids]
        return pids

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
