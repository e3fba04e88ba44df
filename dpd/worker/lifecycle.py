"""A process's life: its states, the moves allowed between them, the restart limit.

Pure: times are `time.monotonic()` values handed in by the caller, so the
limits are immune to wall-clock jumps and unit-testable with a fake clock.
`Proc.move` refuses a move the table does not allow: a policy bug shows as
an error at the line that made it, not as a process in a state it cannot
leave.
"""
import signal
from collections import deque

from .. import limitspec

WAITING = 'waiting'     # for a dependency to be ready (depends)
STARTING = 'starting'   # started, not ready yet
RUNNING = 'running'
BACKOFF = 'backoff'     # waiting for the restart window
STOPPING = 'stopping'
STOPPED = 'stopped'
EXITED = 'exited'       # ended with restart: false
FAILED = 'failed'       # could not be started; retried later
STATES = (WAITING, STARTING, RUNNING, BACKOFF, STOPPING, STOPPED, EXITED, FAILED)

ACTIVE = frozenset((STARTING, RUNNING, STOPPING))  # a process may exist

# state -> the states it may move to
TRANSITIONS = {
    STOPPED: {WAITING, STARTING, BACKOFF, RUNNING, EXITED},  # RUNNING, EXITED: adopted
    WAITING: {STARTING, BACKOFF},
    STARTING: {RUNNING, FAILED, STOPPING, STOPPED, EXITED, BACKOFF, WAITING},
    RUNNING: {WAITING, STARTING, BACKOFF, EXITED, STOPPING},
    STOPPING: {STOPPED},
    BACKOFF: {WAITING, STARTING},
    FAILED: {WAITING, STARTING, BACKOFF},
    EXITED: {WAITING, STARTING, BACKOFF},
}

# what a stopping process does once it is down: nothing, start its new definition,
# be removed, start again as after a crash (it was unhealthy), or start again
# uncounted (an operator's `dpd-ctl restart`)
THEN_NOTHING, THEN_START, THEN_REMOVE, THEN_RESTART = None, 'start', 'remove', 'restart'
THEN_COMMAND = 'command'

MAX_STARTS = 5
WINDOW_SECONDS = 60.0
FAILURE_RETRY_FIRST = 1.0
FAILURE_RETRY_MAX = 60.0


def as_desired(record):
    """A process record (state file, REPORT) is as desired: running (and not
    unhealthy), or a `restart: false` process that ended."""
    state = record.get('state')
    if state == RUNNING:
        return record.get('health') != 'unhealthy'
    return state == EXITED and not record.get('restart', False)


class BadMove(RuntimeError):
    pass


class Stop:
    """A stop under way: what follows it, and how far it has gone."""

    def __init__(self, then, next_spec, limit):
        self.then, self.next_spec = then, next_spec
        self.limit = limit                # stop_timeout ends here (then KILL_GRACE)
        self.killed = False               # KILL was sent
        self.awaiting_group = False       # the leader is gone, its group is not


class Launch:
    """A `daemon: true` program started and not yet found in its pid file."""

    def __init__(self, pid, started, give_up_at):
        self.pid, self.started, self.give_up_at = pid, started, give_up_at
        self.exited = False               # the launcher ended well (reaped: its pid is not ours)


class Proc:
    """The controller's record of one named process."""

    def __init__(self, spec, fingerprint=None):
        self.spec = spec                  # the definition it runs (or ran) with
        self.fingerprint = fingerprint or spec.fingerprint
        self.state, self.since = STOPPED, None
        self.pid = self.started = None    # the process and its procfs.identity
        self.window = RestartWindow()
        self.restarts, self.last_exit, self.error = 0, None, None
        self.failures = 0                 # spawn failures in a row
        self.counted = True               # this start counts toward the restart limit
        self.stop = None                  # a Stop while STOPPING
        self.launch = None                # a Launch while a daemon is looked for
        self.clearing = False             # STARTING: its cgroup is being emptied first
        self.usage = (None, None)         # memory bytes, CPU seconds of its tree
        self.cgroup = None                # its cgroup, as /proc/PID/cgroup names it
        self.health = None                # a health.Health while it runs, if it waits for ready
        self.runs = 0                     # moves into STARTING: a new run is a higher number
        self.check_seq = 0                # the number of its last health check, any run
        self.early_notice = {}            # sd_notify fields heard before its daemon was found

    @property
    def name(self):
        return self.spec.name

    def move(self, state, now):
        """Enter `state` (a no-op if already there); True if the state changed."""
        if state == self.state:
            return False
        if state not in TRANSITIONS[self.state]:
            raise BadMove('%s: %s -> %s is not a move a process makes'
                          % (self.name, self.state, state))
        self.state, self.since = state, now
        self.runs += state == STARTING
        if state != STOPPING:
            self.stop = None
        return True


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


def is_crash(signum):
    """True if an end counts toward the restart limit: an exit of its own (any
    status: no signal), a fault signal, or an end we could not observe (an
    adopted process, whose signal is unknown)."""
    return signum is None or signum in FAULT_SIGNALS


def failure_retry_delay(failures):
    """Seconds before retrying a process that could not be started: 1, 2, 4... 60."""
    return min(FAILURE_RETRY_MAX, FAILURE_RETRY_FIRST * 2 ** max(0, failures - 1))


def oom_text(limits):
    """What `last_exit` and the log say of an OOM kill: out of memory (memory_max 512M)."""
    limit = limits.memory_max if limits else None
    return 'out of memory (memory_max %s)' % limitspec.describe('memory_max', limit) \
        if limit is not None else 'out of memory'


def exit_text(last_exit):
    """A `last_exit` record in a few words: status 1, signal 9, out of memory..."""
    if last_exit.get('oom'):
        return last_exit['oom']
    if last_exit.get('signal'):
        return 'signal %d' % last_exit['signal']
    if last_exit.get('code') is not None:
        return 'status %d' % last_exit['code']
    return 'unknown'


def describe_exit(event, limits=None):
    if event.oom:
        return 'killed by the OOM killer: %s' % oom_text(limits)
    if event.signal:
        try:
            return 'killed by signal %d (%s)' % (event.signal, signal.Signals(event.signal).name)
        except ValueError:
            return 'killed by signal %d' % event.signal
    if event.code is not None:
        return 'exited with status %d' % event.code
    return 'ended (exit status unknown: not our child)'
