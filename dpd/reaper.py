"""The signal thread: turns signals and process deaths into events.

Signal handlers do nothing; `signal.set_wakeup_fd` writes each signal's number
into a pipe this thread waits on (trap 1 of DESIGN.md: no work in handlers).
Children are reaped by pid, never with a blind `waitpid(-1)`: the thread
peeks at the next zombie with WNOWAIT, reaps that pid, and hands the status
to its `Popen`, so `Popen` never waits for it or reports it as exit 0.
Zombies of orphans that the subreaper inherited are reaped too. Processes
that are not our children (adopted after a worker restart) are watched
through pidfds.
"""
import os
import select
import signal
import threading
from contextlib import contextmanager

from .events import ProcessExited, SignalReceived, ThreadCrashed

HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1,
                   signal.SIGQUIT, signal.SIGCHLD)


class _Watch:
    __slots__ = ('name', 'pid', 'popen', 'pidfd')

    def __init__(self, name, pid, popen, pidfd):
        self.name, self.pid, self.popen, self.pidfd = name, pid, popen, pidfd


class Reaper(threading.Thread):
    def __init__(self, post, signals=HANDLED_SIGNALS):
        """Call from the main thread, before any other thread exists."""
        super().__init__(name='signals', daemon=True)
        self._post = post
        self._lock = threading.Lock()
        self._watched = {}                    # pid -> _Watch
        self._by_pidfd = {}                   # pidfd -> _Watch
        self._stopping = False
        self._read_fd, self._write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._epoll = select.epoll()
        self._epoll.register(self._read_fd, select.EPOLLIN)
        for signum in signals:
            signal.signal(signum, _ignore)
        signal.set_wakeup_fd(self._write_fd, warn_on_full_buffer=False)

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
            self._epoll.register(pidfd, select.EPOLLIN)
        return True

    def stop(self):
        self._stopping = True
        os.write(self._write_fd, b'\0')
        self.join(5)

    # ------------------------------------------------------------ this thread

    def run(self):
        try:
            while not self._stopping:
                self._wait_once()
        except Exception as err:
            self._post(ThreadCrashed(self.name, repr(err)))

    def _wait_once(self):
        reap = False
        for fd, _ in self._epoll.poll():
            if fd == self._read_fd:
                reap |= self._read_signals()
            else:
                self._pidfd_ready(fd)
        if reap:
            self._reap_zombies()

    def _read_signals(self):
        try:
            data = os.read(self._read_fd, 512)
        except BlockingIOError:
            return False
        for signum in data:
            if signum and signum != signal.SIGCHLD:
                self._post(SignalReceived(signum))
        return signal.SIGCHLD in data

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
                self._post(ProcessExited(watch.name, watch.pid, code, sig))

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

    def _pidfd_ready(self, pidfd):
        with self._lock:
            watch = self._by_pidfd.get(pidfd)
            if watch is None:
                return
            self._watched.pop(watch.pid, None)
            code, sig = self._reap_pidfd(pidfd)
            self._forget_pidfd(watch)
        self._post(ProcessExited(watch.name, watch.pid, code, sig))

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
            self._epoll.unregister(watch.pidfd)
            os.close(watch.pidfd)


def _ignore(signum, frame):
    """The real handler is the wakeup fd; this only keeps the default action away."""
