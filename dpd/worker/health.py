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
    def __init__(self, spec, now, ready=False, status=None):
        self.check, self.watchdog = spec.health, spec.watchdog
        self.started_at = now
        self.ready_notified = ready or not spec.notify
        self.passed = ready or self.check is None
        self.status = status or ((HEALTHY if ready else STARTING) if self.check else None)
        self.error = None
        self.status_text = None
        self.failures = 0
        self.seq = 0                  # the number of the latest check
        self.running_since = None     # a check is running since then
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
            times.append(self.running_since + self.check.timeout if self.running_since
                         is not None else self.next_check)
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
                if now >= self.running_since + self.check.timeout:
                    found.append(Outcome(Outcome.KILL_CHECK))
            elif now >= self.next_check:
                self.seq += 1
                self.running_since = now
                found.append(Outcome(Outcome.RUN_CHECK))
        if self.watchdog is not None and self.ready and self.status != UNHEALTHY and \
                now >= self.last_watchdog + self.watchdog:
            found.append(self._unhealthy('no WATCHDOG=1 for %s s' % _seconds(self.watchdog)))
        return found

    def checked(self, seq, passed, detail, now):
        """A check ended: the outcome, or None."""
        if seq != self.seq or self.running_since is None:
            return None                # a check of an earlier run, or twice said
        self.running_since = None
        self.next_check = now + self._interval()
        if passed:
            return self._passed()
        self.error = detail
        if not self.passed:
            return None                # before the first pass, failures do not count
        self.failures += 1
        if self.failures >= self.check.retries and self.status != UNHEALTHY:
            return self._unhealthy(detail)
        return None

    def _passed(self):
        self.failures, was = 0, self.status
        first = not self.passed
        self.passed, self.status, self.error = True, HEALTHY, None
        if first and self.ready:
            return self._became_ready()
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
                return self._became_ready()
        return None

    def _became_ready(self):
        self.last_watchdog = max(self.last_watchdog, self.started_at)
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
