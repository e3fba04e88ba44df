"""Deadlines by key: the nearest first, a key set again moves, a cleared one is gone."""
from dpd.deadlines import Deadlines


def test_nearest_and_due_follow_the_latest_setting_of_each_key():
    timers = Deadlines()
    timers.set('a', 5.0)
    timers.set('b', 3.0)
    timers.set('a', 1.0)          # moved earlier
    timers.set('b', 9.0)          # moved later
    timers.set('c', 2.0)
    timers.set('c', None)         # cleared
    assert timers.nearest() == 1.0
    assert timers.pop_due(4.0) == ['a']
    assert timers.get('a') is None and timers.get('b') == 9.0
    assert timers.nearest() == 9.0
    assert timers.pop_due(9.0) == ['b']
    assert timers.nearest() is None and timers.pop_due(100.0) == []


def test_keys_due_at_once_come_nearest_first():
    timers = Deadlines()
    for key, at in (('x', 3.0), ('y', 1.0), ('z', 2.0)):
        timers.set(key, at)
    assert timers.pop_due(3.0) == ['y', 'z', 'x']
