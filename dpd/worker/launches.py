"""`daemon: true`: finding the daemon a launcher left, and ending a launch.

A pid in a file proves nothing, and a file the service's user writes can
name anyone's process: its pid is accepted only if that process provably
comes from the launch (SPEC 5.2), never adopted or signalled otherwise. Its
ancestry alone does not say so once the launcher is gone: every orphan of
every process we run is reparented to the worker (a subreaper), so the
proof is the launch's cgroup, or without cgroups the launcher among its
ancestors, or the launch's spawn mark in its environment.
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
    def __init__(self, reaper, group_of, marks, trees):
        self.reaper, self.group_of = reaper, group_of
        self.marks = marks                # name -> the mark its start carried (no cgroups)
        self.trees = trees                # trees.Trees: the cgroup of each start, if any

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
        why = 'it started before the launch' if started[0] < action.not_before \
            else self._not_launched_by(pid, action)
        if why:
            return [ev.DaemonNotFound(action.name, 'pid %d is not a process the launcher '
                                      'started (%s)' % (pid, why), final=True)]
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
            if not self._not_launched_by(pid, action):
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

    def _not_launched_by(self, pid, action):
        """Why `pid` is not known to come from the launch; None when it is. With a
        cgroup per start, it must be in the launch's (the kernel keeps every
        descendant there, and nothing else gets in); without, the launcher must
        be among its ancestors (while the launcher lives), or the process must
        carry the mark the launch's start put in its environment."""
        cgroup = self.trees.record(action.name)
        if cgroup is not None:
            if procfs.cgroup_of(pid) == cgroup:
                return None
            return "it is not in the launch's cgroup %s" % cgroup
        if action.launcher and (pid == action.launcher or
                                action.launcher in procfs.ancestors(pid)):
            return None
        mark = self.marks.get(action.name)
        if mark is not None and _carries(pid, SPAWN_MARK, mark):
            return None
        return "it neither descends from the launcher nor carries the launch's mark"


def _carries(pid, key, value):
    """True if `pid`'s environment (as it was exec'd) holds `key`=`value`."""
    try:
        with open('/proc/%d/environ' % pid, 'rb') as f:
            environ = f.read().split(b'\0')
    except OSError:
        return False
    return ('%s=%s' % (key, value)).encode() in environ
