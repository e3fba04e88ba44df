"""One process's readiness and health (SPEC 6.1), as pure arithmetic on `now`.

A process with `notify` or `health` is starting until it is ready: READY=1
received (notify) and its first passing check (health); with both keys,
both. Failed checks before the first pass do not count; not ready within
`start_period` (90 s with `notify` alone) is unhealthy. After the first
pass, `retries` failures in a row are unhealthy and a later pass is healthy
again; with `watchdog`, a ready process silent for that long is unhealthy.
Checks never overlap. What follows from being unhealthy (a restart counted
as a crash, or nothing) is the policy's decision.
"""
from .. import healthspec

STARTING, HEALTHY, UNHEALTHY = 'starting', 'healthy', 'unhealthy'
NOTIFY_START_TIMEOUT = 90.0      # systemd's default start timeout
EARLY_FIRST = 0.1                # until the first pass, checks come sooner: 0.1 s, then
EARLY_CHECKS = 1.0               # twice the wait each time, up to 1 s (or `interval`)
FIELDS_KEPT = 64                 # sd_notify fields read from one datagram
TEXT_KEPT = 1000
KILL_GRACE = 5.0                 # a KILLed check that has not ended by then is failed


class Outcome:
    """What a fact or a deadline means for the process."""
    READY = 'ready'              # it just became ready
    RECOVERED = 'recovered'      # healthy again after being unhealthy
    UNHEALTHY = 'unhealthy'      # it just became unhealthy (`reason` says why)
    RUN_CHECK = 'run-check'      # time for the next check
    KILL_CHECK = 'kill-check'    # the running exec check outlived its timeout

    def __init__(self, kind, reason=None):
        self.kind, self.reason = kind, reason

    def __eq__(self, other):
        return isinstance(other, Outcome) and (self.kind, self.reason) == (other.kind,
                                                                            other.reason)

    def __repr__(self):
        return 'Outcome(%r, %r)' % (self.kind, self.reason)


class Health:
    """`seq` continues the numbers of the process's earlier runs: a late result of
    an old run's check can never pass for one of this run."""

    def __init__(self, spec, now, ready=False, status=None, seq=0):
        self.check, self.watchdog = spec.health, spec.watchdog
        self.started_at = now
        self.ready_notified = ready or not spec.notify
        self.passed = ready or self.check is None
        self.status = status or ((HEALTHY if ready else STARTING) if self.check else None)
        self.error = None
        self.status_text = None
        self.failures = 0
        self.seq = seq                # the number of the latest check
        self.running_since = None     # a check is running since then
        self.killed = False           # ...and outlived its timeout: KILL was asked
        self.early = 0                # checks run before the first pass
        self.next_check = now + self._interval() if self.check else None
        self.last_watchdog = now      # adopted or ready: the watchdog counts from here
        self.gave_up = False          # "not ready in time" said once

    @property
    def ready(self):
        return self.ready_notified and self.passed

    def _interval(self):
        if self.passed:
            return self.check.interval
        self.early += 1
        return min(self.check.interval, EARLY_CHECKS, EARLY_FIRST * 2 ** (self.early - 1))

    def _ready_by(self):
        if self.ready or self.gave_up:
            return None
        period = self.check.start_period if self.check else NOTIFY_START_TIMEOUT
        return self.started_at + period

    def deadline(self):
        """When something is due: a check, its timeout, the start's end, the watchdog."""
        times = [self._ready_by()]
        if self.check is not None:
            times.append(self._check_deadline())
        if self.watchdog is not None and self.ready and self.status != UNHEALTHY:
            times.append(self.last_watchdog + self.watchdog)
        times = [t for t in times if t is not None]
        return min(times) if times else None

    def due(self, now):
        """The outcomes of the deadlines that have come."""
        found = []
        ready_by = self._ready_by()
        if ready_by is not None and now >= ready_by:
            self.gave_up = True
            found.append(self._unhealthy('not ready after %s s' % _seconds(now -
                                                                             self.started_at)))
        if self.check is not None:
            if self.running_since is not None:
                if now >= self._check_deadline():
                    found.append(self._overdue_check(now))
            elif now >= self.next_check:
                self.seq += 1
                self.running_since = now
                found.append(Outcome(Outcome.RUN_CHECK))
        if self.watchdog is not None and self.ready and self.status != UNHEALTHY and \
                now >= self.last_watchdog + self.watchdog:
            found.append(self._unhealthy('no WATCHDOG=1 for %s s' % _seconds(self.watchdog)))
        return found

    def _check_deadline(self):
        """The running check's timeout; once it was KILLed, the end of KILL's grace."""
        if self.running_since is None:
            return self.next_check
        return self.running_since + self.check.timeout + (KILL_GRACE if self.killed else 0)

    def _overdue_check(self, now):
        """A check past its timeout is KILLed; one that still has not said it ended
        (its start failed unseen) is failed, so the next one can come."""
        if not self.killed:
            self.killed = True
            return Outcome(Outcome.KILL_CHECK)
        return self._ended_check(False, 'timeout after %s s' % _seconds(self.check.timeout),
                                 now)

    def checked(self, seq, passed, detail, now):
        """A check ended: the outcome, or None."""
        if seq != self.seq or self.running_since is None:
            return None                # a check of an earlier run, or twice said
        if self.killed:
            detail = 'timeout after %s s' % _seconds(self.check.timeout)
        return self._ended_check(passed, detail, now)

    def _ended_check(self, passed, detail, now):
        self.running_since, self.killed = None, False
        outcome = self._passed(now) if passed else self._failed(detail)
        self.next_check = now + self._interval()    # after the pass: the pace it sets
        return outcome

    def _failed(self, detail):
        self.error = detail
        if not self.passed:
            return None                # before the first pass, failures do not count
        self.failures += 1
        if self.failures >= self.check.retries and self.status != UNHEALTHY:
            return self._unhealthy(detail)
        return None

    def _passed(self, now):
        self.failures, was = 0, self.status
        first = not self.passed
        self.passed, self.status, self.error = True, HEALTHY, None
        if first and self.ready:
            return self._became_ready(now)
        if was == UNHEALTHY:
            return Outcome(Outcome.RECOVERED)
        return None

    def notified(self, fields, now):
        """sd_notify fields from the process's own tree: the outcome, or None."""
        if 'STATUS' in fields:
            self.status_text = fields['STATUS'][:TEXT_KEPT]
        if fields.get('WATCHDOG') == '1':
            self.last_watchdog = now
        if fields.get('READY') == '1' and not self.ready_notified:
            self.ready_notified = True
            if self.ready:
                return self._became_ready(now)
        return None

    def _became_ready(self, now):
        self.last_watchdog = now       # the watchdog counts from readiness, not the start
        return Outcome(Outcome.READY)

    def _unhealthy(self, reason):
        self.status, self.error = UNHEALTHY, reason
        return Outcome(Outcome.UNHEALTHY, reason)

    def record(self):
        """What the state file shows of it."""
        return {'health': self.status, 'health_error': self.error,
                'status_text': self.status_text}


def parse_notification(data):
    """The fields of one sd_notify datagram: KEY=VALUE lines, bounded; {} if not text."""
    try:
        text = data.decode('utf-8')
    except UnicodeDecodeError:
        return {}
    fields = {}
    for line in text.split('\n')[:FIELDS_KEPT]:
        key, sep, value = line.partition('=')
        if sep and key:
            fields[key[:64]] = value[:TEXT_KEPT]
    return fields


def _seconds(value):
    return healthspec.seconds_text(round(value, 1))
