"""Deadlines by key, for a policy's `next_deadline()` and its Tick (pure).

Setting a key again replaces its deadline; a heap keeps the nearest first and
entries that were replaced or cleared are dropped lazily when they surface,
so each set is O(log n) however often a deadline moves.
"""
import heapq
import itertools


class Deadlines:
    def __init__(self):
        self._at = {}                 # key -> deadline
        self._heap = []               # (deadline, seq, key); stale entries included
        self._seq = itertools.count()

    def set(self, key, deadline):
        """`deadline` for `key` (None clears it)."""
        if deadline is None:
            self._at.pop(key, None)
            return
        self._at[key] = deadline
        heapq.heappush(self._heap, (deadline, next(self._seq), key))

    def get(self, key):
        return self._at.get(key)

    def nearest(self):
        """The nearest deadline, or None."""
        while self._heap:
            deadline, _, key = self._heap[0]
            if self._at.get(key) == deadline:
                return deadline
            heapq.heappop(self._heap)
        return None

    def pop_due(self, now):
        """The keys whose deadline has come, nearest first; they are cleared."""
        due = []
        while self._heap and self._heap[0][0] <= now:
            deadline, _, key = heapq.heappop(self._heap)
            if self._at.get(key) == deadline:
                del self._at[key]
                due.append(key)
        return due
