"""What a state write costs is what changed: the worker's snapshot reuses the
records of unchanged processes, and WallTimes their shown copies."""
import time

import pytest

from dpd import state
from worker_world import World, proc


def test_a_restart_among_many_makes_one_new_record():
    world = World(*[proc('p%d' % i) for i in range(50)])
    before = {r['name']: r for r in world.policy.snapshot()['procs']}
    world.crash('p7', 1.0)
    after = {r['name']: r for r in world.policy.snapshot()['procs']}
    remade = sorted(name for name in after if after[name] is not before[name])
    assert remade == ['p7']
    assert after['p7']['pid'] != before['p7']['pid'] and after['p7']['restarts'] == 1


def test_a_process_waiting_for_another_shows_what_it_waits_for():
    world = World(proc('db', restart=False, args=['100']), proc('web', depends=['db']))
    assert world.record('web')['waiting_for'] == ['db']
    assert world.record('db')['waiting_for'] is None


def shown_with_marks(record, wall):
    return dict(record, since=wall(record['since']), made=True)


def test_a_record_handed_again_keeps_its_copy_and_a_new_one_gets_a_new_copy():
    view = state.WallTimes('name', shown_with_marks)
    a, b = {'name': 'a', 'since': time.monotonic() - 10}, {'name': 'b', 'since': None}
    first = view.copies([a, b])
    assert [c['name'] for c in first] == ['a', 'b']
    assert first[0]['since'] == pytest.approx(time.time() - 10, abs=0.05)
    b2 = dict(b, since=time.monotonic())
    second = view.copies([a, b2])
    assert second[0] is first[0]                    # the same object: the same copy
    assert second[1] is not first[1] and second[1]['since'] is not None
    assert view.copies([dict(a)])[0] is not first[0]    # an equal record is a new one


def test_a_copy_that_is_no_longer_fresh_is_made_again():
    stale = set()
    view = state.WallTimes('name', shown_with_marks, fresh=lambda c: c['name'] not in stale)
    a = {'name': 'a', 'since': None}
    first = view.copies([a])[0]
    assert view.copies([a])[0] is first
    stale.add('a')
    assert view.copies([a])[0] is not first


def test_a_step_of_the_wall_clock_makes_every_copy_again(monkeypatch):
    view = state.WallTimes('name', shown_with_marks)
    since = time.monotonic()
    a = {'name': 'a', 'since': since}
    first = view.copies([a])[0]
    real = time.time
    monkeypatch.setattr(time, 'time', lambda: real() + 3600)
    stepped = view.copies([a])[0]
    assert stepped is not first
    assert stepped['since'] == pytest.approx(first['since'] + 3600, abs=0.05)


def test_the_shown_times_stay_the_same_text_while_the_clock_does_not_step():
    view = state.WallTimes('name', shown_with_marks)
    since = time.monotonic()
    first = view.copies([{'name': 'a', 'since': since}])[0]['since']
    again = view.copies([{'name': 'a', 'since': since}])[0]['since']   # a new record
    assert again == first
