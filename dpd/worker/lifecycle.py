"""Process states and the restart limits, as pure arithmetic on `now`.

Times are `time.monotonic()` values handed in by the caller: the limits are
immune to wall-clock jumps and unit-testable with a fake clock.
"""
import signal
from collections import deque

STARTING = 'starting'
RUNNING = 'running'
BACKOFF = 'backoff'     # waiting for the restart window
STOPPING = 'stopping'
STOPPED = 'stopped'
EXITED = 'exited'       # ended with restart: false
FAILED = 'failed'       # could not be started; retried later

ACTIVE = frozenset((STARTING, RUNNING, STOPPING))  # a process may exist
SETTLED_OK = frozenset((RUNNING, EXITED))          # "as desired" for dpd-ctl

MAX_STARTS = 5
WINDOW_SECONDS = 60.0
FAILURE_RETRY_FIRST = 1.0
FAILURE_RETRY_MAX = 60.0


class RestartWindow:
    """At most MAX_STARTS counted starts in any WINDOW_SECONDS (the first start
    and every start after a crash count; see `is_crash`)."""

    def __init__(self, starts=()):
        self.starts = deque(sorted(starts)[-MAX_STARTS:], maxlen=MAX_STARTS)

    def allows(self, now):
        return len(self.starts) < MAX_STARTS or now - self.starts[0] >= WINDOW_SECONDS

    def next_allowed(self, now):
        """The earliest time a start is allowed (now, if it is)."""
        return now if self.allows(now) else self.starts[0] + WINDOW_SECONDS

    def record(self, now):
        self.starts.append(now)


# Signals a process gets from its own fault: dying of one is a crash. Any other
# signal (KILL, TERM, HUP, INT...) was sent from outside: an operator, a deploy
# script, the OOM killer. The restart limit is a brake on crash loops, so only
# crashes count toward it; a killed process comes back at once, every time.
FAULT_SIGNALS = frozenset((signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE,
                           signal.SIGABRT, signal.SIGSYS, signal.SIGTRAP, signal.SIGXCPU,
                           signal.SIGXFSZ, signal.SIGPIPE))


def is_crash(code, signum):
    """True if an end counts toward the restart limit: an exit of its own (any
    status), a fault signal, or an end we could not observe (an adopted process)."""
    return signum is None or signum in FAULT_SIGNALS


def failure_retry_delay(failures):
    """Seconds before retrying a process that could not be started: 1, 2, 4... 60."""
    return min(FAILURE_RETRY_MAX, FAILURE_RETRY_FIRST * 2 ** max(0, failures - 1))
