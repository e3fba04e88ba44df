"""StateEncoder: the same bytes as jsonfile.dumps, without re-encoding what stayed."""
from hypothesis import given, settings, strategies as st

from dpd import jsonfile, state

# No two scalars equal that encode apart (False == 0, 1 == 1.0): the encoder compares
# entries as values, since a field of the daemons' records never changes type between
# writes (StateEncoder's docstring); mixed, hypothesis found [False] "unchanged" from [0].
scalars = st.none() | st.booleans() | st.integers(2, 2**40) | st.integers(-2**40, -1) | \
    st.text(max_size=8) | st.floats(allow_nan=False, allow_infinity=False).filter(
        lambda f: not f.is_integer())
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) |
                      st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=8)
entries = st.fixed_dictionaries({'name': st.sampled_from('abcd')},
                                optional={'state': st.sampled_from(['running', 'backoff']),
                                          'pid': st.integers(1, 4 * 10**6), 'x': values})
docs = st.fixed_dictionaries({'procs': st.lists(entries, max_size=5)},
                             optional={'config': values, 'pid': st.integers(),
                                       'nodes': st.lists(st.fixed_dictionaries(
                                           {'node': st.text(max_size=4), 'v': values}),
                                           max_size=3), 'é': values})


@settings(max_examples=300, deadline=None)
@given(st.lists(docs, min_size=1, max_size=4))
def test_every_write_is_what_jsonfile_dumps_gives(sequence):
    encoder = state.StateEncoder()
    for doc in sequence:
        assert encoder.dumps(doc) == jsonfile.dumps(doc)


def test_an_unchanged_entry_keeps_its_text_and_a_changed_one_is_encoded_again():
    """Equal entries are not encoded again: their last text is reused. Shown with
    1 == 1.0, which Python calls equal and JSON writes apart (the encoder relies
    on fields never changing type; here that reliance makes reuse visible)."""
    encoder = state.StateEncoder()
    procs = [{'name': n, 'state': 'running', 'pid': 10 + i} for i, n in enumerate('abc')]
    encoder.dumps({'procs': procs, 'pid': 1})
    changed = [dict(procs[0], pid=10.0), dict(procs[1], pid=99), dict(procs[2])]
    text = encoder.dumps({'procs': changed, 'pid': 1})
    assert '"pid":10,' in text and '"pid":10.0' not in text, 'a reused text'
    assert '"pid":99' in text, 'the changed entry, encoded again'
    assert jsonfile.loads(text)['procs'][1]['pid'] == 99


def test_a_node_entry_changed_a_value_at_a_time_is_what_jsonfile_dumps_gives():
    """The master's node records change one value at a time (a report moves
    `last_seen`, keeps the process table; an edit changes `desired`): each write
    is still exactly what jsonfile.dumps gives, whatever keys come before or
    after the process table."""
    encoder = state.StateEncoder()
    processes, worker = [{'name': 'a', 'pid': 1}], {'pid': 7, 'running': True}
    node = {'node': 'n1', 'state': 'in-sync', 'last_seen': 1.5, 'processes': processes,
            'worker': worker, 'errors': [], 'desired': {'gen': 1, 'processes': 1}}
    sequence = [node, dict(node, last_seen=2.5), dict(node, last_seen=3.5, state='stale'),
                dict(node, last_seen=3.5, processes=[{'name': 'a', 'pid': 2}]),
                dict(node, last_seen=4.5, worker={'pid': 8, 'running': True}),
                {'processes': processes}, {'node': 'n1', 'processes': processes},
                {'processes': processes, 'worker': worker}, {'node': 'n1'},
                dict(node, desired={'gen': 2, 'processes': 1})]
    for entry in sequence:
        doc = {'nodes': [entry]}
        assert encoder.dumps(doc) == jsonfile.dumps(doc)


def test_a_node_entry_keeps_the_text_of_its_process_table_while_the_rest_changes():
    """The table, most of a node's record, is encoded again only when it is
    another object. Shown by changing it in place, which callers never do."""
    encoder = state.StateEncoder()
    processes = [{'name': 'a', 'pid': 1}]
    node = {'node': 'n1', 'last_seen': 1.5, 'processes': processes, 'state': 'in-sync'}
    encoder.dumps({'nodes': [node]})
    processes[0]['pid'] = 2
    text = encoder.dumps({'nodes': [dict(node, last_seen=2.5, state='pending')]})
    assert '"pid":1' in text, 'the table\'s text of last time'
    assert '"last_seen":2.5' in text and '"state":"pending"' in text, 'the rest, anew'
    text = encoder.dumps({'nodes': [dict(node, processes=[{'name': 'a', 'pid': 3}])]})
    assert '"pid":3' in text, 'another table: encoded again'


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.dictionaries(st.sampled_from(['a', 'node', 'q', 'z']), values,
                                          max_size=3), values, st.booleans()),
                min_size=1, max_size=5))
def test_node_entries_that_keep_their_table_are_what_jsonfile_dumps_gives(steps):
    encoder, table = state.StateEncoder(), None
    for fields, new_table, keep in steps:
        table = table if keep and table is not None else new_table
        doc = {'nodes': [dict(fields, node='n1', processes=table)]}
        assert encoder.dumps(doc) == jsonfile.dumps(doc)


def test_a_state_file_written_with_an_encoder_reads_back(tmp_path):
    path = str(tmp_path / 'w.state.json')
    encoder = state.StateEncoder()
    for pid in (5, 6):
        state.write(path, 'dpd-workerd', {'procs': [{'name': 'a', 'pid': pid}]}, encoder)
        assert state.read(path)['procs'] == [{'name': 'a', 'pid': pid}]


@settings(max_examples=300, deadline=None)
@given(values | st.integers() | st.text())
def test_the_canonical_text_is_simplejsons_to_the_byte(value):
    """jsonfile.dumps makes compact text with the stdlib's encoder (faster), and a
    list's sha256 is taken over that text on the master and on every client, of
    any version: it must be what simplejson, used before, makes."""
    import pytest
    simplejson = pytest.importorskip('simplejson')
    assert jsonfile.dumps(value) == simplejson.dumps(value, sort_keys=True,
                                                     separators=(',', ':'), ensure_ascii=True)


def test_what_is_not_json_is_refused_as_before():
    """jsonfile.dumps keeps the encoder's errors: TypeError for what JSON cannot
    say, ValueError for NaN and the infinities (callers catch those two)."""
    import pytest
    for value in (object(), {'a': {1, 2}}, b'bytes', [float('nan')], {'x': float('inf')}):
        with pytest.raises((TypeError, ValueError)):
            jsonfile.dumps(value)
    with pytest.raises(ValueError):
        jsonfile.dumps({'x': [float('-inf')]})
    with pytest.raises(TypeError):
        jsonfile.dumps([1, object()])
    assert jsonfile.dumps({'b': [None, True, 1.5, 'é\n'], 'a': {}}) == \
        '{"a":{},"b":[null,true,1.5,"\\u00e9\\n"]}'
    assert jsonfile.dumps('é') == '"\\u00e9"' and jsonfile.dumps(2) == '2'
