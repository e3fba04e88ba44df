"""The main-thread controller, shared by the three daemons.

Threads post facts to one queue; this loop hands each to the policy, which
answers with actions; the executor performs them and its outcomes are fed
back at once, before the next queued fact. The loop sleeps until the next
fact or the policy's nearest deadline: nothing polls.
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

    def run(self):
        """Handle facts until the policy asks to exit; return its Exit action."""
        while self.exit is None:
            self.dispatch(self._next_event())
            handled = 1
            while self.exit is None and handled < DRAIN_BATCH and not self.events.empty():
                self.dispatch(self._next_event())
                handled += 1
            self.flush()
        return self.exit

    def _next_event(self):
        deadline = self.policy.next_deadline()
        if deadline is not None:
            timeout = deadline - self.clock()
            if timeout <= 0:
                return Tick()
        else:
            timeout = None
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            return Tick()

    def dispatch(self, event):
        pending = deque([event])
        while pending:
            for action in self.policy.handle(pending.popleft(), self.clock()):
                if isinstance(action, Exit):
                    self.exit = self.exit or action
                else:
                    pending.extend(self._perform(action))

    def flush(self):
        for action in self.policy.flush(self.clock()):
            self._perform(action)

    def _perform(self, action):
        try:
            return self.executor.perform(action) or ()
        except Exception:  # one failed action must not take the daemon down
            log.exception('failed to perform %r', action)
            return ()
