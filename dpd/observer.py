"""Observer: the base of every thread. It watches and reports; it never decides.

Each observer waits in its own loop on its own file descriptors plus a wake-up
pipe, so `stop()` and requests from other threads reach it at once. An
exception that escapes `observe()` is posted as ThreadCrashed: the controller
decides what a dead thread means, the thread never dies silently.
"""
import logging
import os
import threading

from .events import ThreadCrashed

WAKE_BYTE = b'\0'     # the signal thread's pipe also carries signal numbers; 0 is none
log = logging.getLogger('dpd')


class Observer(threading.Thread):
    def __init__(self, name, post):
        super().__init__(name=name, daemon=True)
        self.post = post
        self.stopping = False
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def observe(self):
        """The thread's loop; return when `self.stopping` is set."""
        raise NotImplementedError

    def run(self):
        try:
            self.observe()
        except Exception as err:
            log.exception('the %s thread crashed', self.name)
            self.post(ThreadCrashed(self.name, repr(err)))

    def wake(self):
        try:
            os.write(self.wake_w, WAKE_BYTE)
        except BlockingIOError:
            pass  # the pipe is full of wake-ups already

    def read_wakeups(self):
        """What the wake-up pipe holds (and empty it)."""
        chunks = []
        while True:
            try:
                chunk = os.read(self.wake_r, 4096)
            except BlockingIOError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b''.join(chunks)

    def stop(self, timeout=5.0):
        self.stopping = True
        self.wake()
        self.join(timeout)
