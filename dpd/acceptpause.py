"""A listening socket that rests when accept() fails (out of file descriptors).

The pending connection stays in the kernel's queue, so the listener stays
readable: a selector would report it at once, again and again, and the
thread would spin on a failing accept(). Out of the selector for a second,
it lets the other connections finish and give their descriptors back.
"""
import logging
import selectors
import time

REST_SECONDS = 1.0
log = logging.getLogger('dpd')


class AcceptPause:
    def __init__(self, selector, listener, data=None, what='connections'):
        self.selector, self.listener, self.data, self.what = selector, listener, data, what
        self.until = None               # resting until then (monotonic), or None

    def rest(self, err):
        """accept() failed with `err` (not EAGAIN): stop listening for a while."""
        if self.until is None:
            self.selector.unregister(self.listener)
            log.warning('cannot accept %s: %s; trying again in %g s', self.what,
                        err.strerror or err, REST_SECONDS)
        self.until = time.monotonic() + REST_SECONDS

    def resume_if_due(self, now):
        if self.until is not None and now >= self.until:
            self.until = None
            self.selector.register(self.listener, selectors.EVENT_READ, self.data)
