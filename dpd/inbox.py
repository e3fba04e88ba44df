"""The one queue every thread posts to, with a budget for what peers send.

Facts from the daemon's own observers (signals, files, children) always get
in (`put`). Messages from the network are offered (`offer`) and refused past
the budget: past MAX_MESSAGES waiting, or, for a message bigger than
SMALL_MESSAGE, past MAX_BYTES of frames waiting. So whatever peers send, the
daemon's memory stays bounded, and a flood of big messages still lets an
honest node's small HELLO through (SPEC 5.2). The controller takes facts out
with `get` and `get_nowait`, as from a queue.

A thread that receives many messages at once offers them together
(`offer_all`): one lock, one queue entry and one wake-up of the controller for
the lot, not one per message (each wake-up is a switch of threads and of the
GIL, which at a thousand nodes cost more than handling the messages).
"""
import queue
import threading
from collections import deque

MAX_MESSAGES = 20000
MAX_BYTES = 64 * 1024 * 1024
SMALL_MESSAGE = 4096


class _Offered:
    __slots__ = ('fact', 'size')

    def __init__(self, fact, size):
        self.fact, self.size = fact, size


class Inbox:
    def __init__(self, max_messages=MAX_MESSAGES, max_bytes=MAX_BYTES):
        self.max_messages, self.max_bytes = max_messages, max_bytes
        self._queue = queue.SimpleQueue()
        self._taken_batch = deque()   # the rest of a batch already out of the queue
        self._lock = threading.Lock()
        self.waiting = self.waiting_bytes = 0     # offered messages not yet taken
        self.dropped = self.dropped_bytes = 0     # refused since the start

    def put(self, fact):
        self._queue.put(fact)

    def offer(self, fact, size):
        """Queue a message from a peer unless the budget is spent; False if dropped."""
        with self._lock:
            full = self.waiting >= self.max_messages or (
                size > SMALL_MESSAGE and self.waiting_bytes + size > self.max_bytes)
            if full:
                self.dropped += 1
                self.dropped_bytes += size
                return False
            self.waiting += 1
            self.waiting_bytes += size
        self._queue.put(_Offered(fact, size))
        return True

    def offer_all(self, offers):
        """`offer` for each (fact, size) of `offers`, queued as one batch; returns
        how many were dropped."""
        batch, dropped = [], 0
        with self._lock:
            for fact, size in offers:
                if self.waiting >= self.max_messages or (
                        size > SMALL_MESSAGE and self.waiting_bytes + size > self.max_bytes):
                    self.dropped += 1
                    self.dropped_bytes += size
                    dropped += 1
                    continue
                self.waiting += 1
                self.waiting_bytes += size
                batch.append(_Offered(fact, size))
        if batch:
            self._queue.put(batch)
        return dropped

    def get(self, timeout=None):
        if self._taken_batch:
            return self._taken(self._taken_batch.popleft())
        return self._taken(self._queue.get(timeout=timeout))

    def get_nowait(self):
        if self._taken_batch:
            return self._taken(self._taken_batch.popleft())
        return self._taken(self._queue.get_nowait())

    def _taken(self, item):
        if type(item) is list:              # a batch: its first now, the rest next
            self._taken_batch.extend(item)
            item = self._taken_batch.popleft()
        if type(item) is not _Offered:
            return item
        with self._lock:
            self.waiting -= 1
            self.waiting_bytes -= item.size
        return item.fact
