"""The worker's signal thread, which also reaps: signals and deaths become facts.

Children are reaped by pid, never with a blind `waitpid(-1)`: the thread
peeks at the next zombie with WNOWAIT, reaps that pid, and hands the status
to its `Popen`, so `Popen` never waits for it or reports it as exit 0.
Zombies of orphans that the subreaper inherited are reaped too. Processes
that are not our children (adopted after a worker restart) are watched
through pidfds, in the same epoll as the signals.
"""
import os
import select
import signal
import threading
from contextlib import contextmanager

from ..signals import SignalThread
from .events import ProcessExited

HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1,
                   signal.SIGQUIT, signal.SIGCHLD)


class _Watch:
    __slots__ = ('name', 'pid', 'popen', 'pidfd')

    def __init__(self, name, pid, popen, pidfd):
        self.name, self.pid, self.popen, self.pidfd = name, pid, popen, pidfd


class Reaper(SignalThread):
    def __init__(self, post):
        """Call from the main thread, before any other thread exists."""
        super().__init__(post, HANDLED_SIGNALS)
        self._lock = threading.Lock()
        self._watched = {}                    # pid -> _Watch
        self._by_pidfd = {}                   # pidfd -> _Watch

    # ------------------------------------------------------------ main thread

    @contextmanager
    def spawning(self):
        """Hold while starting a child and watching it, so a child that dies at
        once is not mistaken for an orphan and reaped before it is known."""
        with self._lock:
            yield

    def watch_child(self, name, popen):
        """Call inside `spawning()`."""
        self._watched[popen.pid] = _Watch(name, popen.pid, popen, None)

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
        watch = _Watch(name, pid, None, pidfd)
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
                self.post(ProcessExited(watch.name, watch.pid, code, sig))

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

    def fd_ready(self, pidfd):
        with self._lock:
            watch = self._by_pidfd.get(pidfd)
            if watch is None:
                return
            self._watched.pop(watch.pid, None)
            code, sig = self._reap_pidfd(pidfd)
            self._forget_pidfd(watch)
        self.post(ProcessExited(watch.name, watch.pid, code, sig))

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
