"""Log lines from untrusted input, rate-limited: a flood of bad messages must not
become a flood of log lines. Pure: times are handed in.

Keys name a kind of line ("denied", "twins"), never something a peer chooses
(its key, its node name): a peer with a fresh key per connection would
otherwise get a fresh line each time (SPEC 5.2)."""
from collections import OrderedDict

WINDOW = 60.0
MAX_KEYS = 1024


class LogLimiter:
    """At most one line per key per WINDOW seconds; says how many were held back."""

    def __init__(self, window=WINDOW):
        self.window = window
        self._seen = OrderedDict()      # key -> [last logged at, suppressed since]

    def admit(self, key, message, now):
        entry = self._seen.get(key)
        if entry is not None and now - entry[0] < self.window:
            entry[1] += 1
            return None
        suppressed = entry[1] if entry else 0
        self._seen[key] = [now, 0]
        self._seen.move_to_end(key)
        while len(self._seen) > MAX_KEYS:
            self._seen.popitem(last=False)
        if suppressed:
            return '%s (%d more like it in the last %d s)' % (message, suppressed, self.window)
        return message
