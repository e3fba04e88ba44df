"""What every daemon's policy does the same way.

A policy is pure: `handle(event, now)` returns actions, nothing reads a clock
or touches a file. This base dispatches facts by type, turns "something
changed" into one state-file write per batch of facts, keeps log lines that
untrusted input can trigger rate-limited, and gives the two network daemons
their common answer to signals.
"""
import logging
import signal

from . import actions as act
from .ratelimit import LogLimiter


class Policy:
    def __init__(self, handlers):
        self._handlers = handlers        # fact type -> method(event, now, out)
        self.dirty = True                # the state file is behind
        self.state_due = None            # no state-file write before this time
        self.limiter = LogLimiter()

    def handle(self, event, now):
        out = []
        handler = self._handlers.get(type(event))
        if handler is not None:
            handler(event, now, out)
        return out

    def next_deadline(self):
        raise NotImplementedError

    def snapshot(self, now):
        raise NotImplementedError

    def state_interval(self):
        """The least time between two state-file writes: none by default."""
        return 0.0

    def state_deadline(self):
        """When a state file held back by state_interval() is due."""
        return self.state_due if self.dirty and self.state_due is not None else None

    def flush(self, now):
        if not self.dirty or (self.state_due is not None and now < self.state_due):
            return []
        self.dirty = False
        interval = self.state_interval()
        self.state_due = now + interval if interval else None
        return [act.WriteState(self.snapshot(now))]

    def limited(self, out, key, message, now, level=logging.WARNING):
        """Log `message` unless a line with the same key was logged a moment ago."""
        text = self.limiter.admit(key, message, now)
        if text is not None:
            out.append(log(level, text))


class NetworkPolicy(Policy):
    """The master's and the client's answers to signals and to a crashed thread."""
    crash_note = ''

    def on_signal(self, event, now, out):
        if event.signum in (signal.SIGTERM, signal.SIGINT):
            out.append(act.Notify('STOPPING=1'))
            out.append(act.WriteState(self.snapshot(now)))
            out.append(act.Exit(0))
        elif event.signum == signal.SIGHUP:
            out.append(log(logging.INFO, 'HUP: reloading the configuration'))
            out.append(act.ReloadConfig())
        elif event.signum == signal.SIGUSR1:
            out.append(act.ReopenLogs())

    def on_thread_crashed(self, event, now, out):
        out.append(log(logging.CRITICAL, 'thread %s crashed: %s; exiting (%s)'
                       % (event.thread, event.error, self.crash_note)))
        out.append(act.Exit(1))


def log(level, message):
    return act.Log(level, message)
