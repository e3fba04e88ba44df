"""plaincheck: the master's quick look at a node's list. It may only say "valid"
of a list the full PROCESS checks (procspec) accept; and it must say so of the
plain lists people write, or it saves nothing."""
import json
import os

from hypothesis import HealthCheck, given, settings, strategies as st

from dpd import jsonfile
from dpd.cluster.config import load_master, parse_master
from dpd.plaincheck import PLAIN, PLAIN_LIST, plainly_valid
from dpd.procspec import parse_process_list
from dpd.schema import Problems

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MASTER_EXAMPLE = os.path.join(ROOT, 'examples', 'diprocd-master.example.json')


def passed(entries):
    """Whether the quick look passes `entries`, by its walk of the values or by
    the list's canonical text (the master's way)."""
    try:
        text = jsonfile.dumps(entries)
    except (TypeError, ValueError):
        text = None
    return plainly_valid(entries) or plainly_valid(entries, text)


def problems_of(entries):
    problems = Problems()
    parse_process_list(entries, 'procs', problems, 'nobody')
    return problems.messages


# Values near every edge of every plain key's rule, valid and not, and of a few
# keys the quick look leaves to the full checks.
TEXTS = ['a', 'web-1.x@y:z', '', 'a' * 128, 'a' * 129, 'a b', 'x\0', 'é', '\ud800', '/',
         '/bin/sleep', '//srv/x', '/a/../b', 'relative/path', '/tmp/\0x', '/tmp/é', '_svc',
         'svc$', '9user', 'a' * 33, '.']
NUMBERS = [0, 1, -1, 0.5, 86400, 86400.5, 1e300, -0.0, 10 ** 30]
SCALARS = TEXTS + NUMBERS + [True, False, None]
ENVS = [{}, {'A': 'b'}, {'A=B': 'c'}, {'': 'x'}, {'A': 'x\0'}, {'A\0': 'x'}, {'A': 1},
        {'A': 'é'}, {'é': 'x'}, {'N' * 257: 'x'}, {'N' * 256: 'x'}, {'A': None}]
ARGS = [[], ['--port', '80'], ['x\0'], ['é'], [1], [None], ['a'] * 5000, [['nested']]]
VALUES = st.sampled_from(SCALARS) | st.sampled_from(ENVS) | st.sampled_from(ARGS) | \
    st.text(max_size=8) | st.lists(st.text(max_size=4), max_size=3)
KEYS = sorted(PLAIN) + ['umask', 'depends', 'watchdog', 'stop_signal', 'limits', '_note', 'nmae']


def test_every_edge_value_of_every_key_alone():
    """Each key set to each edge value in an otherwise valid entry (and the entry
    without its name or program): exhaustive, one problem at a time."""
    bases = [{'name': 'a', 'run': '/bin/sleep'}, {'name': 'a'}, {'run': '/bin/sleep'}]
    for base in bases:
        for key in KEYS:
            for value in SCALARS + ENVS + ARGS:
                entries = [dict(base, **{key: value})]
                if passed(entries):
                    assert problems_of(entries) == [], entries


def entry_strategy():
    base = st.fixed_dictionaries({'name': st.sampled_from(['a', 'b', 'a', 'x y', 'c'])},
                                 optional={'run': st.sampled_from(['/bin/sleep', 'sleep'])})
    return st.tuples(base, st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=3)).map(
        lambda pair: dict(pair[0], **pair[1]))


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(entry_strategy(), max_size=4) | st.sampled_from([None, {}, 'x', [1], [[]]]))
def test_a_list_it_passes_is_valid_to_the_full_checks(entries):
    if passed(entries):
        assert problems_of(entries) == []


@settings(max_examples=300, deadline=None)
@given(st.lists(st.fixed_dictionaries(
    {'name': st.sampled_from(['a', 'b', 'c', 'd']), 'run': st.just('/bin/true')},
    optional={'pid_file': st.sampled_from(['/run/a.pid', '/run//a.pid', '/run/./a.pid',
                                           '/run/b.pid', '/']),
              'daemon': st.booleans(), 'write_pid': st.booleans()}), max_size=4))
def test_unique_names_and_pid_files_and_daemons_as_the_full_checks_say(entries):
    if passed(entries):
        assert problems_of(entries) == []


def test_the_lists_people_write_are_seen_as_plain():
    plain = [
        [],
        [{'name': 'web', 'run': '/usr/bin/web', 'args': ['--port', '8080'], 'user': 'www-data',
          'env': {'MODE': 'prod'}, 'logs': '/var/log/web.log', 'restart': True}],
        [{'name': 'db', 'run': '/usr/sbin/db', 'daemon': True, 'pid_file': '/run/db.pid',
          'write_pid': False, 'chroot': '/srv/db', 'cwd': 'data', 'stop_timeout': 30},
         {'name': 'cache', 'run': '/usr/bin/cache', 'group': 'adm', 'notify': True,
          'pid_file': '/run/cache.pid', 'stop_timeout': 2.5}],
    ]
    for entries in plain:
        assert problems_of(entries) == [] and plainly_valid(entries), entries
    with open(MASTER_EXAMPLE) as f:
        example = json.load(f)
    plain_nodes = [node for node, entries in example['nodes'].items() if plainly_valid(entries)]
    assert plain_nodes, 'no list of the master example is seen as plain'


def test_the_canonical_text_of_a_plain_list_is_read_at_once():
    """The master's way: one pattern over the text, for every plain key but
    stop_timeout (a number's range is the walk's)."""
    web = [{'name': 'web', 'run': '/usr/bin/web', 'args': ['--port', '8080', ''],
            'user': 'www-data', 'group': 'adm', 'env': {'MODE': 'prod', 'X': ''},
            'logs': '/var/log/web.log', 'restart': True, 'notify': False, 'cwd': 'data'},
           {'name': 'db', 'run': '/usr/sbin/db', 'daemon': True, 'pid_file': '/run/db.pid',
            'write_pid': False, 'chroot': '/srv/db', 'user': 'svc$'}]
    for entries in ([], web, [web[1]], [{'name': 'a', 'run': '/'}]):
        assert PLAIN_LIST.fullmatch(jsonfile.dumps(entries)), entries
        assert plainly_valid(entries, jsonfile.dumps(entries))
    not_plain = [[dict(web[0], env={'A=B': 'c'})], [dict(web[0], args=['x'] * 4097)],
                 [dict(web[0], args=['\n'])], [dict(web[0], name='a b')],
                 [dict(web[0], user='9x')], [dict(web[0], run='usr/bin/web')],
                 [dict(web[0], restart=1)], [dict(web[0], stop_timeout=3)],
                 [{'name': 'a'}], [{'run': '/bin/true'}], [dict(web[0], env={'A': 'é'})],
                 [dict(web[0], env={'': 'x'})], [dict(web[0], env={'N' * 257: 'x'})]]
    for entries in not_plain:
        assert not PLAIN_LIST.fullmatch(jsonfile.dumps(entries)), entries
    # read at once, but not consistent: the same rules as the walk's
    for entries in ([web[0], web[0]], [dict(web[1], write_pid=True)],
                    [web[1], dict(web[1], name='db2', pid_file='/run//db.pid')]):
        assert PLAIN_LIST.fullmatch(jsonfile.dumps(entries))
        assert not plainly_valid(entries, jsonfile.dumps(entries)), entries


def test_it_leaves_the_rest_to_the_full_checks():
    looks_closer = [
        [{'name': 'a', 'run': '/bin/true'}, {'name': 'a', 'run': '/bin/false'}],
        [{'name': 'a', 'run': '/bin/true', 'pid_file': '/run/x.pid'},
         {'name': 'b', 'run': '/bin/true', 'pid_file': '/run//x.pid'}],
        [{'name': 'a', 'run': '/bin/true', 'daemon': True}],
        [{'name': 'a', 'run': '/bin/true', 'daemon': True, 'pid_file': '/run/a.pid'}],
        [{'name': 'a', 'run': 'bin/true'}],
        [{'name': 'a'}],
        [{'name': 'a', 'run': '/bin/true', 'depends': []}],       # valid, but not plain
        [{'name': 'a', 'run': '/bin/true', 'stop_timeout': True}],
        [{'name': 'a', 'run': '/bin/true', 'env': {'A=B': 'c'}}],
        [{'name': 'a', 'run': '/bin/true', 'args': ['é']}],         # valid, but not plain
        [{'name': 'a', 'run': '/bin/true', '_comment': 'x'}],
        {'name': 'a', 'run': '/bin/true'},
    ]
    for entries in looks_closer:
        assert not passed(entries), entries


def test_the_master_still_names_every_problem_of_a_bad_list():
    doc = {'master_stats': 'tcp://127.0.0.1:7001', 'master_updates': 'tcp://127.0.0.1:7002',
           'nodes': {'web1': [{'name': 'a', 'run': '/bin/true'},
                              {'name': 'b', 'run': 'true', 'restart': 1}],
                     'web2': [{'name': 'a', 'run': '/bin/true'}],
                     'web3': [{'name': 'a', 'run': '/bin/true'}, {'name': 'a', 'run': '/bin/b'}]}}
    config = parse_master(doc, '/etc/diprocd/master.json')
    assert config.nodes['web2'].valid
    errors = config.nodes['web1'].errors
    assert any('nodes["web1"][1] ("b").run' in e for e in errors), errors
    assert any('nodes["web1"][1] ("b").restart' in e for e in errors), errors
    assert any('duplicate name' in e for e in config.nodes['web3'].errors)


def test_the_master_example_loads_the_same_either_way(monkeypatch):
    fast = load_master(MASTER_EXAMPLE)
    monkeypatch.setattr('dpd.cluster.config.plainly_valid', lambda entries, text=None: False)
    full = load_master(MASTER_EXAMPLE)
    assert fast == full
