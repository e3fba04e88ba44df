"""The worker's signal thread, which also reaps: signals and deaths become facts.

Children are reaped by pid, never with a blind `waitpid(-1)`: the thread
peeks at the next zombie with WNOWAIT, reaps that pid, and hands the status
to its `Popen`, so `Popen` never waits for it or reports it as exit 0.
Zombies of orphans that the subreaper inherited are reaped too. Processes
that are not our children (adopted after a worker restart) are watched
through pidfds, and whole trees (cgroups) through inotify on their
`cgroup.events`, all in the same epoll as the signals. A death says whether
the OOM killer acted in the process's tree meanwhile.
"""
import os
import select
import signal
import threading
from contextlib import contextmanager

from .. import inotify
from ..signals import SignalThread
from . import cgroupfs
from .events import CheckDone, ProcessExited, TreeEmptied

HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1,
                   signal.SIGQUIT, signal.SIGCHLD)


class _Watch:
    __slots__ = ('name', 'pid', 'popen', 'pidfd', 'oom_before', 'check')

    def __init__(self, name, pid, popen, pidfd, oom_before=None, check=None):
        self.name, self.pid, self.popen, self.pidfd = name, pid, popen, pidfd
        self.oom_before = oom_before
        self.check = check            # an exec check: (its number, its output's pipe)


class Reaper(SignalThread):
    def __init__(self, post, oom_kills=lambda name: None):
        """Call from the main thread, before any other thread exists.
        `oom_kills(name)`: the OOM kills counted so far in that process's tree."""
        super().__init__(post, HANDLED_SIGNALS)
        self.oom_kills = oom_kills
        self._lock = threading.Lock()
        self._watched = {}                    # pid -> _Watch
        self._by_pidfd = {}                   # pidfd -> _Watch
        self._trees = {}                      # inotify watch -> (process name, events file)
        self._inotify = inotify.init()
        self.epoll.register(self._inotify, select.EPOLLIN)

    # ------------------------------------------------------------ main thread

    @contextmanager
    def spawning(self):
        """Hold while starting a child and watching it, so a child that dies at
        once is not mistaken for an orphan and reaped before it is known."""
        with self._lock:
            yield

    def watch_child(self, name, popen):
        """Call inside `spawning()`."""
        self._watched[popen.pid] = _Watch(name, popen.pid, popen, None, self.oom_kills(name))

    def watch_check(self, name, seq, popen, output):
        """An exec check of process `name`: its end is CheckDone, with the first line
        of what it printed (read from `output`, which the reaper then closes).
        Call inside `spawning()`."""
        self._watched[popen.pid] = _Watch(name, popen.pid, popen, None, check=(seq, output))

    def watch_tree(self, name, events_file):
        """Post TreeEmptied(name) whenever the cgroup's `events_file` says it emptied."""
        wd = inotify.add_watch(self._inotify, events_file, inotify.IN_MODIFY)
        with self._lock:
            self._trees[wd] = (name, events_file)

    def name_of(self, pid):
        """The name a watched process was started or adopted under; None if unknown."""
        watch = self._watched.get(pid)
        return watch.name if watch is not None else None

    def watch_process(self, name, pid):
        """Watch a process that may not be our child; False if it is gone."""
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            return False
        watch = _Watch(name, pid, None, pidfd, self.oom_kills(name))
        with self._lock:
            self._watched[pid] = watch
            self._by_pidfd[pidfd] = watch
            self.epoll.register(pidfd, select.EPOLLIN)
        return True

    # ------------------------------------------------------------ this thread

    def signals_arrived(self, signums):
        super().signals_arrived([s for s in signums if s != signal.SIGCHLD])
        if signal.SIGCHLD in signums:
            self._reap_zombies()

    def _reap_zombies(self):
        while True:
            with self._lock:
                try:
                    zombie = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
                except ChildProcessError:
                    return
                if zombie is None:
                    return
                watch = self._watched.pop(zombie.si_pid, None)
                code, sig = self._reap(zombie.si_pid, watch)
                self._forget_pidfd(watch)
            if watch is not None:
                self._post_exit(watch, code, sig)

    @staticmethod
    def _reap(pid, watch):
        """Reap `pid` (a zombie now); tell its Popen, so Popen never waits for it."""
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:
            return None, None
        code = os.waitstatus_to_exitcode(status)
        if watch is not None and watch.popen is not None:
            watch.popen.returncode = code
        return (code, None) if code >= 0 else (None, -code)

    def _post_exit(self, watch, code, sig):
        if watch.check is not None:
            seq, output = watch.check
            self.post(CheckDone(watch.name, seq, code == 0, _check_detail(output, code, sig)))
            return
        before, after = watch.oom_before, self.oom_kills(watch.name)
        oom = before is not None and after is not None and after > before
        self.post(ProcessExited(watch.name, watch.pid, code, sig, oom))

    def fd_ready(self, fd):
        if fd == self._inotify:
            self._trees_changed()
        else:
            self._pidfd_ready(fd)

    def _trees_changed(self):
        try:
            data = os.read(self._inotify, 65536)
        except BlockingIOError:
            return
        for wd, mask, _ in inotify.parse(data):
            with self._lock:
                tree = self._trees.get(wd)
                if mask & inotify.IN_IGNORED:
                    self._trees.pop(wd, None)   # the cgroup was removed
            if tree is not None and not mask & inotify.IN_IGNORED and _emptied(tree[1]):
                self.post(TreeEmptied(tree[0]))

    def _pidfd_ready(self, pidfd):
        with self._lock:
            watch = self._by_pidfd.get(pidfd)
            if watch is None:
                return
            self._watched.pop(watch.pid, None)
            code, sig = self._reap_pidfd(pidfd)
            self._forget_pidfd(watch)
        self._post_exit(watch, code, sig)

    @staticmethod
    def _reap_pidfd(pidfd):
        """The exit status if the process was our child (a subreaped daemon)."""
        try:
            info = os.waitid(os.P_PIDFD, pidfd, os.WEXITED | os.WNOHANG)
        except ChildProcessError:
            return None, None
        if info is None:
            return None, None
        if info.si_code == os.CLD_EXITED:
            return info.si_status, None
        return None, info.si_status

    def _forget_pidfd(self, watch):
        if watch is not None and watch.pidfd is not None:
            self._by_pidfd.pop(watch.pidfd, None)
            self.epoll.unregister(watch.pidfd)
            os.close(watch.pidfd)


def _emptied(events_file):
    try:
        return 'populated 0' in cgroupfs.read(events_file)
    except OSError:
        return False


def _check_detail(output, code, sig):
    """What an exec check said: its first line of output, else how it ended."""
    try:
        data = os.read(output, 4096)
    except OSError:
        data = b''
    finally:
        os.close(output)
    line = next((l.strip() for l in data.decode('utf-8', 'replace').splitlines() if l.strip()),
                '')
    if line:
        return line[:200]
    return 'exit status %d' % code if code is not None else 'killed by signal %s' % sig
