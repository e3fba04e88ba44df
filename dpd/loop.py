"""The main-thread controller, shared by the three daemons.

Threads post facts to one queue; this loop hands each to the policy, which
answers with actions; the executor performs them and its outcomes are fed
back at once, before the next queued fact. The loop sleeps until the next
fact or the nearest deadline: nothing polls.

Two kinds of deadline: the policy's own (`next_deadline()`: a restart, a
stop timeout, a heartbeat), which a `Tick` serves, and the state file's
(`flush_deadline()`), which only `flush()` serves. Queued facts always come
first: a deadline that has passed is served once the queue is empty, or
after a full batch, so a flood of facts delays a Tick by one batch at most
and a Tick never delays a fact.
"""
import logging
import queue
import time
from collections import deque

from .actions import Exit
from .events import Tick

log = logging.getLogger('dpd.loop')
DRAIN_BATCH = 1000   # facts handled before the policy's state is flushed again


class Controller:
    def __init__(self, policy, executor, events, clock=time.monotonic):
        self.policy, self.executor, self.events, self.clock = policy, executor, events, clock
        self.exit = None
        # an executor may hold what it does until the batch ends (the network
        # daemons hand their messages to the zmq thread in one go)
        self._end_batch = getattr(executor, 'end_batch', None)

    def run(self):
        """Handle facts until the policy asks to exit; return its Exit action."""
        while self.exit is None:
            self._handle_batch()
            self.flush()
        return self.exit

    def _handle_batch(self):
        """Queued facts (at most DRAIN_BATCH), then one Tick if a deadline has passed."""
        event = self._wait()
        handled = 0
        while event is not None and self.exit is None:
            self.dispatch(event)
            handled += 1
            event = self._queued() if handled < DRAIN_BATCH else None
        if self.exit is None and self._overdue(self.policy.next_deadline()):
            self.dispatch(Tick())

    def _wait(self):
        """The next fact; None when a deadline (the policy's or the flush's) comes first."""
        nearest = _earliest(self.policy.next_deadline(), self.policy.flush_deadline())
        timeout = None if nearest is None else max(0.0, nearest - self.clock())
        if timeout == 0.0:
            return self._queued()
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            return None

    def _queued(self):
        try:
            return self.events.get_nowait()
        except queue.Empty:
            return None

    def _overdue(self, deadline):
        return deadline is not None and deadline <= self.clock()

    def dispatch(self, event):
        pending = deque([event])
        while pending:
            for action in self.policy.handle(pending.popleft(), self.clock()):
                if isinstance(action, Exit):
                    self.exit = self.exit or action
                else:
                    pending.extend(self._perform(action))

    def flush(self):
        """After a batch of facts: the state file if due (its outcome handed back to
        the policy), and what the executor held."""
        for action in self.policy.flush(self.clock()):
            for outcome in self._perform(action):
                self.dispatch(outcome)
        if self._end_batch is not None:
            try:
                self._end_batch()
            except Exception:  # as for an action
                log.exception('failed to end a batch')

    def _perform(self, action):
        try:
            return self.executor.perform(action) or ()
        except Exception:  # one failed action must not take the daemon down
            log.exception('failed to perform %r', action)
            return ()


def _earliest(*deadlines):
    present = [d for d in deadlines if d is not None]
    return min(present) if present else None


def serve(controller, threads, ready):
    """The end of every daemon's start: start the threads not started yet, say
    ready, run until the policy exits; then stop every thread, the last first.
    Returns the policy's Exit action."""
    for thread in threads:
        if thread.ident is None:
            thread.start()
    ready()
    finish = controller.run()
    for thread in reversed(threads):
        thread.stop()
    return finish
