"""The controller, driven by a fake clock and a fake queue: what it hands the
policy, in which order, and how long it sleeps."""
import queue

import pytest

from dpd import actions as act
from dpd.events import SignalReceived, Tick
from dpd.loop import DRAIN_BATCH, Controller


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class Blocked(Exception):
    """The loop would sleep for ever: the script is over."""


class FakeQueue:
    """Facts that arrive at given times; get() advances the clock as a wait would."""

    def __init__(self, clock):
        self.clock = clock
        self.arrivals = []          # (time, fact), in order
        self.timeouts = []          # every timeout the loop slept with

    def post(self, fact, at=None):
        self.arrivals.append((self.clock.now if at is None else at, fact))
        self.arrivals.sort(key=lambda item: item[0])

    def get_nowait(self):
        if self.arrivals and self.arrivals[0][0] <= self.clock.now:
            return self.arrivals.pop(0)[1]
        raise queue.Empty

    def get(self, timeout=None):
        self.timeouts.append(timeout)
        if self.arrivals and (timeout is None or self.arrivals[0][0] <= self.clock.now + timeout):
            at, fact = self.arrivals.pop(0)
            self.clock.now = max(self.clock.now, at)
            return fact
        if timeout is None:
            raise Blocked()
        self.clock.now += timeout
        raise queue.Empty


class ScriptedPolicy:
    """Records what it is handed; answers facts with scripted actions."""

    def __init__(self):
        self.seen = []              # (fact, now)
        self.flushes = []           # now of each flush
        self.deadline = None        # next_deadline()
        self.flush_due = None       # flush_deadline()
        self.answers = {}           # fact -> actions
        self.on_tick = lambda now: None

    def handle(self, event, now):
        self.seen.append((event, now))
        if isinstance(event, Tick):
            self.on_tick(now)
        return list(self.answers.get(event, ()))

    def next_deadline(self):
        return self.deadline

    def flush_deadline(self):
        return self.flush_due

    def flush(self, now):
        self.flushes.append(now)
        if self.flush_due is not None and now >= self.flush_due:
            self.flush_due = None
        return []


class Executor:
    def __init__(self):
        self.performed = []
        self.outcomes = {}          # action -> facts
        self.failing = set()

    def perform(self, action):
        self.performed.append(action)
        if action in self.failing:
            raise RuntimeError('boom')
        return self.outcomes.get(action, ())


def fact(n):
    return SignalReceived(n)


@pytest.fixture
def world():
    clock = Clock()
    events, policy, executor = FakeQueue(clock), ScriptedPolicy(), Executor()
    return clock, events, policy, executor, Controller(policy, executor, events, clock)


def run_until_blocked(controller):
    with pytest.raises(Blocked):
        controller.run()


def kinds(policy):
    return [type(event).__name__ if isinstance(event, Tick) else event.signum
            for event, _ in policy.seen]


def test_queued_facts_come_first_even_with_an_overdue_flush_deadline(world):
    """The master's case: its state file is overdue (a deadline only flush()
    serves) while reports are queued. Each fact is handed over once, no Tick."""
    clock, events, policy, _, controller = world
    policy.flush_due = clock.now - 1.0
    for n in (1, 2, 3):
        events.post(fact(n))
    run_until_blocked(controller)
    assert kinds(policy) == [1, 2, 3]
    assert policy.flushes, 'the overdue state file was written'


def test_an_overdue_policy_deadline_gets_one_tick_after_the_queued_facts(world):
    clock, events, policy, _, controller = world
    policy.deadline = clock.now - 0.5

    def served(now):
        policy.deadline = None
    policy.on_tick = served
    events.post(fact(1))
    events.post(fact(2))
    run_until_blocked(controller)
    assert kinds(policy) == [1, 2, 'Tick']


def test_it_sleeps_until_the_nearest_deadline_and_ticks_then(world):
    clock, events, policy, _, controller = world
    policy.deadline = clock.now + 2.5
    ticked_at = []

    def served(now):
        ticked_at.append(now)
        policy.deadline = None
    policy.on_tick = served
    run_until_blocked(controller)
    assert events.timeouts[0] == pytest.approx(2.5)
    assert ticked_at == [pytest.approx(102.5)]


def test_a_fact_arriving_before_the_deadline_is_handled_at_its_time(world):
    clock, events, policy, _, controller = world
    policy.deadline = clock.now + 5.0
    policy.on_tick = lambda now: setattr(policy, 'deadline', None)
    events.post(fact(7), at=clock.now + 1.0)
    run_until_blocked(controller)
    assert [(kind, round(now, 3)) for kind, (_, now) in zip(kinds(policy), policy.seen)] == \
        [(7, 101.0), ('Tick', 105.0)]


def test_a_flush_deadline_wakes_the_loop_for_a_flush_and_no_tick(world):
    clock, events, policy, _, controller = world
    policy.flush_due = clock.now + 0.002
    run_until_blocked(controller)
    assert events.timeouts[0] == pytest.approx(0.002)
    assert policy.seen == []
    assert policy.flushes[-1] == pytest.approx(100.002)


def test_a_flood_of_facts_is_flushed_every_batch_and_a_due_tick_waits_one_batch(world):
    clock, events, policy, _, controller = world
    for n in range(DRAIN_BATCH + 10):
        events.post(fact(n % 60 + 1))
    policy.deadline = clock.now
    policy.on_tick = lambda now: setattr(policy, 'deadline', None)
    run_until_blocked(controller)
    names = kinds(policy)
    assert names.index('Tick') == DRAIN_BATCH
    assert names.count('Tick') == 1
    assert len(policy.flushes) >= 2


def test_outcomes_of_actions_come_back_before_the_next_queued_fact(world):
    clock, events, policy, executor, controller = world
    write = act.Notify('x')
    policy.answers[fact(1)] = [write]
    executor.outcomes[write] = [fact(9)]
    events.post(fact(1))
    events.post(fact(2))
    run_until_blocked(controller)
    assert kinds(policy) == [1, 9, 2]


def test_what_the_state_file_write_produced_is_handed_to_the_policy(world):
    """The executor says how long the write took; the policy holds the next back."""
    clock, events, policy, executor, controller = world
    write = act.WriteState(('a snapshot',))
    executor.outcomes[write] = (fact(7),)
    writes = [[write]]
    policy.flush = lambda now: writes.pop() if writes else []
    events.post(fact(1))
    run_until_blocked(controller)
    assert executor.performed == [write]
    assert kinds(policy) == [1, 7]


def test_exit_ends_the_run_after_a_last_flush(world):
    clock, events, policy, _, controller = world
    policy.answers[fact(1)] = [act.Exit(3)]
    events.post(fact(1))
    events.post(fact(2))
    assert controller.run() == act.Exit(3)
    assert kinds(policy) == [1]
    assert policy.flushes


def test_a_failing_action_is_logged_and_the_loop_goes_on(world):
    clock, events, policy, executor, controller = world
    bad, good = act.Notify('bad'), act.Notify('good')
    policy.answers[fact(1)] = [bad, good]
    executor.failing.add(bad)
    events.post(fact(1))
    events.post(fact(2))
    run_until_blocked(controller)
    assert executor.performed == [bad, good]
    assert kinds(policy) == [1, 2]
