"""dpd-ctl plan's arithmetic (SPEC 6.5): a node's change as the worker will see it."""
from dpd.cluster.plan import MASK, node_change, specs_of


def specs(*entries):
    return specs_of([dict({'run': '/bin/sleep'}, **e) for e in entries], 'web1')


def test_added_removed_and_changed_keys_in_the_workers_terms():
    old = specs({'name': 'a', 'args': ['1']}, {'name': 'b'}, {'name': 'c'})
    new = specs({'name': 'a', 'args': ['2'], 'stop_timeout': 3}, {'name': 'c'}, {'name': 'd'})
    change = node_change('web1', old, new)
    assert change.added == ('d',) and change.removed == ('b',)
    assert sorted(change.changed) == [('a', 'args', ['1'], ['2']), ('a', 'stop_timeout', 10, 3)]
    assert change.changes


def test_a_default_written_out_is_no_change():
    change = node_change('web1', specs({'name': 'a'}),
                         specs({'name': 'a', 'restart': True, 'user': 'nobody', 'args': []}))
    assert not change.changes


def test_env_values_are_never_shown_only_the_names_that_change():
    old = specs({'name': 'a', 'env': {'PASSWORD': 'hunter2', 'KEEP': 'x', 'GONE': 'y'}})
    new = specs({'name': 'a', 'env': {'PASSWORD': 'hunter3', 'KEEP': 'x', 'NEW': 'z'}})
    change = node_change('web1', old, new)
    assert set(change.changed) == {('a', 'env.PASSWORD', MASK, MASK),
                                   ('a', 'env.GONE', MASK, None), ('a', 'env.NEW', None, MASK)}
    assert 'hunter' not in repr(change)


def test_names_alone_when_the_definitions_are_unknown():
    change = node_change('web1', {'a': None, 'b': None}, specs({'name': 'a', 'args': ['9']}))
    assert change.removed == ('b',) and change.added == () and change.changed == ()


def test_nested_keys_compare_as_json():
    old = specs({'name': 'a', 'health': {'tcp': '127.0.0.1:80'}})
    new = specs({'name': 'a', 'health': {'tcp': '127.0.0.1:81'}})
    [(name, key, before, after)] = node_change('web1', old, new).changed
    assert (name, key) == ('a', 'health') and before['tcp'] != after['tcp']
