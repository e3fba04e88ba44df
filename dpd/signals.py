"""The signal thread: turns signals into SignalReceived facts.

Signal handlers do nothing; `signal.set_wakeup_fd` writes each signal's number
into the thread's wake-up pipe, which it waits on with epoll (trap 1 of
DESIGN.md: no work in handlers). Subclasses add file descriptors of their own
to the same epoll (the worker's reaper: pidfds).
"""
import select
import signal

from .events import SignalReceived
from .observer import Observer

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1)


class SignalThread(Observer):
    def __init__(self, post, signals=STOP_SIGNALS):
        """Call from the main thread, before any other thread exists."""
        super().__init__('signals', post)
        self.epoll = select.epoll()
        self.epoll.register(self.wake_r, select.EPOLLIN)
        for signum in signals:
            signal.signal(signum, _ignore)
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)

    def observe(self):
        while not self.stopping:
            for fd, _ in self.epoll.poll():
                if fd == self.wake_r:
                    self.signals_arrived([s for s in self.read_wakeups() if s])
                else:
                    self.fd_ready(fd)

    def signals_arrived(self, signums):
        """`signums` in the order they came, repeats kept (a second TERM means more)."""
        for signum in signums:
            self.post(SignalReceived(signum))

    def fd_ready(self, fd):
        """One of a subclass's own descriptors is readable."""


def _ignore(signum, frame):
    """The real handler is the wakeup fd; this only keeps the default action away."""
