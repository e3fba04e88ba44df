"""What every daemon's policy does the same way.

A policy is pure: `handle(event, now)` returns actions, nothing reads a clock
or touches a file. This base dispatches facts by type, turns "something
changed" into one state-file write per batch of facts, and keeps log lines
that untrusted input can trigger rate-limited.
"""
import logging

from . import actions as act
from .events import StateWritten
from .ratelimit import LogLimiter


class Policy:
    # the most of its time a daemon spends writing its state file (None: no bound)
    STATE_WRITE_SHARE = None

    def __init__(self, handlers):
        # fact type -> method(event, now, out)
        self._handlers = {StateWritten: self._on_state_written, **handlers}
        self.dirty = True                # the state file is behind
        self.state_due = None            # no state-file write before this time
        self.dirty_since = None          # the first flush that found it behind
        self.limiter = LogLimiter()
        self.loaded_at = None            # wall time of the last successful load

    def handle(self, event, now):
        out = []
        handler = self._handlers.get(type(event))
        if handler is not None:
            handler(event, now, out)
        return out

    def next_deadline(self):
        """When the policy next wants a Tick (None: never); `flush()` has its own."""
        raise NotImplementedError

    def snapshot(self, now):
        raise NotImplementedError

    def config_record(self):
        """The state file's `config`: the file in force, when it was loaded (wall
        time, from the ConfigLoaded fact) and the last load's errors (a policy
        keeps `config` and `config_errors`)."""
        config = self.config
        return {'path': config.path if config else None,
                'sha256': config.sha256 if config else None, 'loaded_at': self.loaded_at,
                'ok': not self.config_errors, 'errors': list(self.config_errors)}

    def state_interval(self):
        """The least time between two state-file writes: none by default."""
        return 0.0

    def state_delay(self):
        """How long a first change waits for those that follow it, so that a burst
        (an edit, then every node's report of it) is one write: none by default."""
        return 0.0

    def flush_deadline(self):
        """When a state file held back by state_interval() or state_delay() is due
        (served by flush)."""
        return self._state_write_due() if self.dirty else None

    def flush(self, now):
        if not self.dirty:
            return []
        if self.dirty_since is None:
            self.dirty_since = now
        due = self._state_write_due()
        if due is not None and now < due:
            return []
        self.dirty, self.dirty_since = False, None
        interval = self.state_interval()
        self.state_due = now + interval if interval else None
        return [self.state_action(now)]

    def _on_state_written(self, event, now, out):
        """A write that took much CPU holds the next one back, so that writing costs
        at most STATE_WRITE_SHARE of the time (the master's file of 10,000 nodes
        took 0.3-0.45 s to write after an edit, and was written every 2 s)."""
        share = self.STATE_WRITE_SHARE
        if share:
            earliest = now + event.seconds * (1 - share) / share
            self.state_due = max(self.state_due or earliest, earliest)

    def _state_write_due(self):
        delay = self.state_delay()
        settled = self.dirty_since + delay if delay and self.dirty_since is not None else None
        due = [d for d in (self.state_due, settled) if d is not None]
        return max(due) if due else None

    def state_action(self, now):
        """The action that writes the state file (and what is published with it)."""
        return act.WriteState(self.snapshot(now))

    def limited(self, out, key, message, now, level=logging.WARNING):
        """Log `message` unless a line with the same key was logged a moment ago."""
        text = self.limiter.admit(key, message, now)
        if text is not None:
            out.append(log_action(level, text))


def log_action(level, message):
    """The action that logs `message` at `level`."""
    return act.Log(level, message)
