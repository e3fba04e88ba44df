"""Readiness, health checks and dependencies (SPEC 6.1), pure: the key checkers
(healthspec, procspec, depends), one process's readiness arithmetic
(worker/health.py) on a fake clock, and the worker policy's decisions
(readiness.py, ending.py) driven with scripted facts. Not pure: the probes
thread's checks, on a real thread and real sockets."""
import logging
import queue
import signal
import socket
import time

import pytest
from hypothesis import given, settings, strategies as st

from dpd import depends
from dpd.cluster.config import parse_master
from dpd.config import ConfigError
from dpd.healthspec import Probe
from dpd.worker import actions as act
from dpd.worker import events as ev
from dpd.worker import health as hl
from dpd.worker import lifecycle as lc
from dpd.worker.health import Health, Outcome, parse_notification
from dpd.worker.policy import WorkerPolicy
from dpd.worker.probes import Prober
from worker_world import World, config, logged, notifying, of, proc


def spec(**keys):
    return config(proc('p', **keys)).procs[0]


def tcp(**keys):
    return dict({'tcp': '127.0.0.1:8080'}, **keys)


READY = Outcome(Outcome.READY)
RUN_CHECK = Outcome(Outcome.RUN_CHECK)
KILL_CHECK = Outcome(Outcome.KILL_CHECK)
RECOVERED = Outcome(Outcome.RECOVERED)


def unhealthy(reason):
    return Outcome(Outcome.UNHEALTHY, reason)


# ===================================================================== the keys

def errors_of(*entries):
    with pytest.raises(ConfigError) as info:
        config(*entries)
    return info.value.messages


P = 'procs[0] ("p")'

BAD_KEYS = [
    ('notify-1', {'notify': 1}, P + '.notify: must be true or false, not a number'),
    ('notify-string', {'notify': 'yes'}, P + '.notify: must be true or false, not a string'),
    ('watchdog-without-notify', {'watchdog': 5},
     P + '.watchdog: needs "notify": true (WATCHDOG=1 comes by sd_notify)'),
    ('watchdog-notify-false', {'watchdog': 5, 'notify': False},
     P + '.watchdog: needs "notify": true (WATCHDOG=1 comes by sd_notify)'),
    ('watchdog--1', {'notify': True, 'watchdog': -1},
     P + '.watchdog: must be between 0.1 and 86400, not -1'),
    ('watchdog-0', {'notify': True, 'watchdog': 0},
     P + '.watchdog: must be between 0.1 and 86400, not 0'),
    ('watchdog-string', {'notify': True, 'watchdog': '5'},
     P + '.watchdog: must be a number, not a string'),
    ('watchdog-bool', {'notify': True, 'watchdog': True},
     P + '.watchdog: must be a number, not true'),
    ('health-string', {'health': 'tcp'}, P + '.health: must be an object, not a string'),
    ('health-list', {'health': [tcp()]}, P + '.health: must be an object, not a list'),
    ('health-two-probes', {'health': {'tcp': '127.0.0.1:80', 'http': 'http://127.0.0.1/'}},
     P + '.health: needs exactly one probe: "exec", "tcp" or "http" ("tcp", "http" given)'),
    ('health-three-probes', {'health': {'tcp': '127.0.0.1:80', 'http': 'http://127.0.0.1/',
                                        'exec': ['/bin/true']}},
     P + '.health: needs exactly one probe: "exec", "tcp" or "http" ("exec", "tcp", "http" '
         'given)'),
    ('health-no-probe', {'health': {'interval': 5}},
     P + '.health: needs exactly one probe: "exec", "tcp" or "http" (none given)'),
    ('health-empty', {'health': {}},
     P + '.health: needs exactly one probe: "exec", "tcp" or "http" (none given)'),
    ('health-unknown-key', {'health': tcp(intervall=5)},
     P + '.health: unknown key "intervall" (did you mean "interval"?)'),
    ('health-unknown-key-far', {'health': tcp(command='x')},
     P + '.health: unknown key "command"'),
    ('tcp-without-port', {'health': {'tcp': '127.0.0.1'}},
     P + '.health.tcp: must be "HOST:PORT", such as "127.0.0.1:8080", not "127.0.0.1"'),
    ('tcp-port-0', {'health': {'tcp': '127.0.0.1:0'}}, P + '.health.tcp: has port 0, not 1-65535'),
    ('tcp-port-70000', {'health': {'tcp': '127.0.0.1:70000'}},
     P + '.health.tcp: has port 70000, not 1-65535'),
    ('tcp-port-6-digits', {'health': {'tcp': '127.0.0.1:100000'}},
     P + '.health.tcp: must be "HOST:PORT", such as "127.0.0.1:8080", not "127.0.0.1:100000"'),
    ('tcp-number', {'health': {'tcp': 8080}}, P + '.health.tcp: must be a string, not a number'),
    ('tcp-null', {'health': {'tcp': None}}, P + '.health.tcp: must be a string, not null'),
    ('tcp-url', {'health': {'tcp': 'tcp://127.0.0.1:80'}},
     P + '.health.tcp: must be "HOST:PORT", such as "127.0.0.1:8080", not "tcp://127.0.0.1:80"'),
    ('http-https', {'health': {'http': 'https://127.0.0.1/'}},
     P + '.health.http: must be "http://HOST:PORT/PATH", such as '
         '"http://127.0.0.1:8080/health", not "https://127.0.0.1/"'),
    ('http-no-scheme', {'health': {'http': '127.0.0.1:80/'}},
     P + '.health.http: must be "http://HOST:PORT/PATH", such as '
         '"http://127.0.0.1:8080/health", not "127.0.0.1:80/"'),
    ('http-space-in-path', {'health': {'http': 'http://127.0.0.1/a b'}},
     P + '.health.http: must be "http://HOST:PORT/PATH", such as '
         '"http://127.0.0.1:8080/health", not "http://127.0.0.1/a b"'),
    ('http-header-injection', {'health': {'http': 'http://127.0.0.1/\r\nX-Evil: 1'}},
     P + '.health.http: must be "http://HOST:PORT/PATH", such as '
         '"http://127.0.0.1:8080/health", not "http://127.0.0.1/\\r\\nX-Evil: 1"'),
    ('http-port-0', {'health': {'http': 'http://127.0.0.1:0/'}},
     P + '.health.http: has port 0, not 1-65535'),
    ('tcp-empty-label', {'health': {'tcp': 'a..b:80'}},
     P + '.health.tcp: has host "a..b": an empty label; each part between dots must be 1-63 '
         'characters'),
    ('tcp-leading-dot', {'health': {'tcp': '.a:80'}},
     P + '.health.tcp: has host ".a": an empty label; each part between dots must be 1-63 '
         'characters'),
    ('tcp-two-trailing-dots', {'health': {'tcp': 'a..:80'}},
     P + '.health.tcp: has host "a..": an empty label; each part between dots must be 1-63 '
         'characters'),
    ('tcp-label-of-64', {'health': {'tcp': 'x' * 64 + '.com:80'}},
     P + '.health.tcp: has host "%s.com": a label of 64 characters; each part between dots '
         'must be 1-63 characters' % ('x' * 64)),
    ('tcp-name-of-254', {'health': {'tcp': 'a.' * 126 + 'bc:80'}},
     P + '.health.tcp: has host "%sbc": 254 characters, more than 253' % ('a.' * 126)),
    ('tcp-brackets-not-an-address', {'health': {'tcp': '[1..2]:80'}},
     P + '.health.tcp: has host "[1..2]", not an IP address'),
    ('http-empty-label', {'health': {'http': 'http://a..b:8080/health'}},
     P + '.health.http: has host "a..b": an empty label; each part between dots must be '
         '1-63 characters'),
    ('http-label-of-64', {'health': {'http': 'http://%s/' % ('y' * 64)}},
     P + '.health.http: has host "%s": a label of 64 characters; each part between dots '
         'must be 1-63 characters' % ('y' * 64)),
    ('exec-relative', {'health': {'exec': ['bin/check']}},
     P + '.health.exec: must be a list of strings, the first an absolute program path'),
    ('exec-empty', {'health': {'exec': []}},
     P + '.health.exec: must be a list of strings, the first an absolute program path'),
    ('exec-string', {'health': {'exec': '/bin/true'}},
     P + '.health.exec: must be a list, not a string'),
    ('exec-number-arg', {'health': {'exec': ['/bin/true', 1]}},
     P + '.health.exec: item 1 must be a string, not a number'),
    ('exec-nul', {'health': {'exec': ['/bin/true', 'a\0b']}},
     P + '.health.exec: item 1 must not contain a NUL character'),
    ('interval-0', {'health': tcp(interval=0)},
     P + '.health.interval: must be between 0.1 and 86400, not 0'),
    ('interval-string', {'health': tcp(interval='10')},
     P + '.health.interval: must be a number, not a string'),
    ('timeout-above-interval', {'health': tcp(interval=1, timeout=2)},
     P + '.health.timeout: must be at most interval (1 s), not 2 s'),
    ('timeout-above-default-interval', {'health': tcp(timeout=11)},
     P + '.health.timeout: must be at most interval (10 s), not 11 s'),
    ('timeout-0', {'health': tcp(timeout=0)},
     P + '.health.timeout: must be between 0.01 and 86400, not 0'),
    ('retries-0', {'health': tcp(retries=0)},
     P + '.health.retries: must be an integer from 1 to 1000, not 0'),
    ('retries-float', {'health': tcp(retries=2.0)},
     P + '.health.retries: must be an integer from 1 to 1000, not 2.0'),
    ('retries-bool', {'health': tcp(retries=True)},
     P + '.health.retries: must be an integer from 1 to 1000, not true'),
    ('retries-1001', {'health': tcp(retries=1001)},
     P + '.health.retries: must be an integer from 1 to 1000, not 1001'),
    ('start_period-negative', {'health': tcp(start_period=-1)},
     P + '.health.start_period: must be between 0 and 86400, not -1'),
    ('on_unhealthy-boom', {'health': tcp(on_unhealthy='boom')},
     P + '.health.on_unhealthy: must be "restart" or "none", not "boom"'),
    ('on_unhealthy-bool', {'health': tcp(on_unhealthy=False)},
     P + '.health.on_unhealthy: must be "restart" or "none", not false'),
    ('depends-string', {'depends': 'q'}, P + '.depends: must be a list, not a string'),
    ('depends-object', {'depends': {'q': True}}, P + '.depends: must be a list, not an object'),
    ('depends-number-item', {'depends': [1]},
     P + '.depends: item 0 must be a string, not a number'),
    ('depends-bad-character', {'depends': ['q/x']},
     P + '.depends: item 0 must be 1-128 of A-Z a-z 0-9 . _ - @ :, not "q/x"'),
    ('depends-empty-name', {'depends': ['']},
     P + '.depends: item 0 must be 1-128 of A-Z a-z 0-9 . _ - @ :, not ""'),
]


@pytest.mark.parametrize('keys, message', [c[1:] for c in BAD_KEYS], ids=[c[0] for c in BAD_KEYS])
def test_every_new_key_is_checked_and_the_whole_file_rejected(keys, message):
    """A bad value rejects the whole file (a good entry beside it changes nothing),
    with the JSON path of the value."""
    assert errors_of(proc('p', **keys), proc('q')) == [message]


def test_every_problem_of_every_entry_is_said_at_once():
    messages = errors_of(proc('a', notify=1), proc('b', health=tcp(interval=0, retries=0)),
                         proc('c', depends=['zz']))
    assert messages == [
        'procs[0] ("a").notify: must be true or false, not a number',
        'procs[1] ("b").health.interval: must be between 0.1 and 86400, not 0',
        'procs[1] ("b").health.retries: must be an integer from 1 to 1000, not 0',
        'procs[2] ("c").depends: unknown process "zz"']


def test_valid_combinations_are_accepted_with_their_defaults():
    both = spec(notify=True, watchdog=2.5, depends=[], health={
        'http': 'http://localhost:8080/healthz', 'interval': 3, 'retries': 2,
        'start_period': 0, 'on_unhealthy': 'none'})
    assert both.notify and both.watchdog == 2.5 and both.waits_for_ready
    check = both.health
    assert (check.probe.kind, check.probe.host, check.probe.port, check.probe.path) == \
        ('http', 'localhost', 8080, '/healthz')
    assert (check.interval, check.timeout, check.retries, check.start_period,
            check.on_unhealthy) == (3, 3, 2, 0, 'none')     # timeout: the interval when shorter
    plain = spec(health={'tcp': '[::1]:6379'}).health
    assert (plain.probe.host, plain.probe.port) == ('::1', 6379)
    assert (plain.interval, plain.timeout, plain.retries, plain.start_period,
            plain.on_unhealthy) == (10, 5, 3, 30, 'restart')
    assert spec(health={'http': 'http://127.0.0.1'}).health.probe.path == '/'
    assert spec(health={'http': 'http://127.0.0.1'}).health.probe.port == 80
    assert spec(health={'exec': ['/bin/check', '-q']}).health.probe.argv == ('/bin/check', '-q')
    assert spec(health=tcp(interval=1, timeout=1)).health.timeout == 1
    assert not spec().waits_for_ready and spec(notify=True).waits_for_ready
    assert spec(health=tcp()).waits_for_ready and not spec(notify=False).waits_for_ready
    a, b = config(proc('a'), proc('b', depends=['a', 'a'])).procs
    assert b.depends == ('a', 'a')


def test_host_names_up_to_the_limits_and_ip_addresses_are_accepted():
    longest_label, longest_name = 'x' * 63 + '.example', 'a.' * 126 + 'b'
    for host, target in (('localhost', 'localhost:80'), ('127.0.0.1', '127.0.0.1:80'),
                         ('::1', '[::1]:80'), ('::ffff:10.0.0.1', '[::ffff:10.0.0.1]:80'),
                         ('db-1.internal_zone.example', 'db-1.internal_zone.example:80'),
                         (longest_label, longest_label + ':80'),
                         (longest_name, longest_name + ':80'),
                         ('db.example.', 'db.example.:80')):
        assert spec(health={'tcp': target}).health.probe.host == host
        assert spec(health={'http': 'http://%s/' % target}).health.probe.host == host
    assert len(longest_name) == 253


def test_unset_new_keys_keep_the_old_fingerprint_and_set_ones_change_it():
    """A definition of before SPEC 6.1 keeps its fingerprint (no restart on upgrade);
    setting a key to its default keeps it too; any real change is a change."""
    base = spec()
    assert spec(notify=False, depends=[]).fingerprint == base.fingerprint
    changed = [spec(notify=True), spec(health=tcp()), spec(notify=True, watchdog=1),
               spec(health=tcp(interval=5)),
               config(proc('q'), proc('p', depends=['q'])).procs[1]]
    assert len({base.fingerprint} | {s.fingerprint for s in changed}) == 6


def test_depends_messages_name_the_cycle_and_the_unknown_name():
    assert errors_of(proc('app', depends=['db']), proc('db', depends=['app']),
                     proc('web', depends=['ap'])) == [
        'procs[2] ("web").depends: unknown process "ap" (did you mean "app"?)',
        'procs[0] ("app").depends: cycle app -> db -> app']
    assert errors_of(proc('x', depends=['x'])) == ['procs[0] ("x").depends: cycle x -> x']
    # a name of an entry that is invalid otherwise is not "unknown": one message, its own
    assert errors_of(proc('a', depends=['b']), proc('b', restart='no')) == [
        'procs[1] ("b").restart: must be true or false, not a string']


def test_the_master_checks_each_node_list_with_the_same_rules():
    doc = {'master_stats': 'tcp://127.0.0.1:31123', 'master_updates': 'tcp://127.0.0.1:31124',
           'nodes': {'n1': [proc('a', depends=['b']), proc('b', depends=['a'])],
                     'n2': [proc('a', notify=True, watchdog=1, health=tcp())],
                     'n3': [proc('a', health=tcp(retries=0))]}}
    nodes = parse_master(doc, '/etc/m.json').nodes
    assert nodes['n1'].errors == ('nodes["n1"][0] ("a").depends: cycle a -> b -> a',)
    assert nodes['n2'].valid
    assert nodes['n3'].errors == (
        'nodes["n3"][0] ("a").health.retries: must be an integer from 1 to 1000, not 0',)


# ===================================================================== depends.cycles

def is_cycle(graph, cycle):
    return all(cycle[(i + 1) % len(cycle)] in graph[name] for i, name in enumerate(cycle))


def test_cycles_of_small_graphs():
    assert depends.cycles({}) == []
    assert depends.cycles({'a': [], 'b': ['a'], 'c': ['a', 'b']}) == []
    assert depends.cycles({'a': ['a']}) == [['a']]
    assert depends.cycles({'a': ['b'], 'b': ['a']}) == [['a', 'b']]
    # the shortest way back from the knot's first name, in the file's order
    graph = {'x': [], 'a': ['b'], 'b': ['c', 'a'], 'c': ['a']}
    assert depends.cycles(graph) == [['a', 'b']]
    # one cycle per knot, in the order of the file
    graph = {'p': ['q'], 'q': ['p'], 'm': ['n'], 'n': ['o'], 'o': ['m'], 'z': ['p', 'm']}
    assert depends.cycles(graph) == [['p', 'q'], ['m', 'n', 'o']]
    # what depends on a cycle is not part of it
    assert depends.cycles({'top': ['a'], 'a': ['b'], 'b': ['a']}) == [['a', 'b']]


def test_a_dense_graph_of_a_thousand_names_is_fast():
    names = ['p%04d' % i for i in range(1000)]
    dense = {name: [other for other in names if other != name] for name in names}
    started = time.perf_counter()
    found = depends.cycles(dense)
    dag = depends.cycles({name: names[:i] for i, name in enumerate(names)})
    elapsed = time.perf_counter() - started
    assert found == [['p0000', 'p0001']] and dag == []
    assert elapsed < 2.0, 'a million edges took %.2f s' % elapsed


def test_long_chains_and_rings_need_no_recursion():
    count = 50000
    chain = {'n%d' % i: ['n%d' % (i + 1)] for i in range(count)}
    chain['n%d' % count] = []
    assert depends.cycles(chain) == []
    chain['n%d' % count] = ['n0']
    [ring] = depends.cycles(chain)
    assert len(ring) == count + 1 and ring[0] == 'n0' and is_cycle(chain, ring)


def test_a_whole_file_of_mutual_dependencies_is_rejected_quickly_with_one_message():
    names = ['p%03d' % i for i in range(300)]
    entries = [proc(name, depends=[o for o in names if o != name]) for name in names]
    started = time.perf_counter()
    messages = errors_of(*entries)
    assert time.perf_counter() - started < 3.0
    assert messages == ['procs[0] ("p000").depends: cycle p000 -> p001 -> p000']


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 12).flatmap(lambda n: st.lists(
    st.lists(st.integers(0, n - 1), max_size=4), min_size=n, max_size=n)))
def test_cycles_agrees_with_a_topological_sort(adjacency):
    """Any graph: no cycle reported exactly when it can be ordered; each reported
    cycle is real, starts at its first name, and no two share a name."""
    names = ['v%d' % i for i in range(len(adjacency))]
    graph = {names[i]: [names[j] for j in deps] for i, deps in enumerate(adjacency)}
    found = depends.cycles(graph)
    remaining = {name: set(deps) for name, deps in graph.items()}
    while True:
        free = [name for name, deps in remaining.items() if not deps & remaining.keys()]
        if not free:
            break
        for name in free:
            del remaining[name]
    assert bool(found) == bool(remaining)
    seen = set()
    for cycle in found:
        assert is_cycle(graph, cycle)
        assert cycle[0] == min(cycle, key=names.index)
        assert not seen & set(cycle)
        seen |= set(cycle)
        assert set(cycle) <= remaining.keys()


# ===================================================================== parse_notification

def test_parse_notification_reads_key_value_lines_within_bounds():
    assert parse_notification(b'READY=1\nSTATUS=Serving 3 clients\n') == {
        'READY': '1', 'STATUS': 'Serving 3 clients'}
    assert parse_notification(b'STATUS=a=b') == {'STATUS': 'a=b'}
    assert parse_notification(b'garbage\n=nokey\nREADY=1') == {'READY': '1'}
    assert parse_notification(b'') == {}
    assert parse_notification(b'\xff\xfeREADY=1') == {}            # not UTF-8: ignored
    many = b'\n'.join(b'K%d=%d' % (i, i) for i in range(1000))
    fields = parse_notification(many)
    assert len(fields) == hl.FIELDS_KEPT and 'K63' in fields and 'K64' not in fields
    long = parse_notification(b'STATUS=' + b'x' * 100000 + b'\n' + b'K' * 500 + b'=v')
    assert long['STATUS'] == 'x' * hl.TEXT_KEPT and long['K' * 64] == 'v'
    # READY after 64 other lines is not seen: the bound is on lines, not on bytes
    assert 'READY' not in parse_notification(b'X=1\n' * 64 + b'READY=1')


# ===================================================================== the probes thread

@pytest.fixture
def prober():
    """A real probes thread; what it posts lands in `prober.posted`."""
    posted = queue.SimpleQueue()
    thread = Prober(posted.put)
    thread.posted = posted
    thread.start()
    yield thread
    thread.stop()


def test_a_host_getaddrinfo_cannot_encode_fails_the_check_and_the_thread_serves_on(prober):
    """The file refuses such hosts now; a record written before (the state file) may
    still hold one. getaddrinfo raised UnicodeError ("label empty or too long"), which
    killed the probes thread, and with it the worker, at every start."""
    refusing = socket.socket()
    refusing.bind(('127.0.0.1', 0))             # bound, not listening: refused at once
    port = refusing.getsockname()[1]
    try:
        prober.check('p', 1, Probe('tcp', host='a..b', port=80), 1.0)
        prober.check('p', 2, Probe('http', host='x' * 64, port=80, path='/'), 1.0)
        prober.check('p', 3, Probe('tcp', host='127.0.0.1', port=port), 1.0)
        done = [prober.posted.get(timeout=5) for _ in range(3)]
    finally:
        refusing.close()
    assert [type(d) for d in done] == [ev.CheckDone] * 3, done
    assert [(d.seq, d.passed) for d in done] == [(1, False), (2, False), (3, False)]
    assert done[0].detail.startswith('a..b:80: cannot resolve a..b: ')
    assert 'label empty or too long' in done[0].detail
    assert done[1].detail.startswith('http://%s:80/: cannot resolve %s: ' % ('x' * 64,
                                                                             'x' * 64))
    assert done[2].detail in ['127.0.0.1:%d: %s' % (port, word)
                              for word in ('Connection refused', 'ECONNREFUSED')]
    assert prober.is_alive()


# ===================================================================== Health

def test_notify_alone_is_ready_on_ready_1_and_has_no_health():
    health = Health(spec(notify=True), 10.0)
    assert not health.ready and health.record() == {
        'health': None, 'health_error': None, 'status_text': None}
    assert health.deadline() == 10.0 + hl.NOTIFY_START_TIMEOUT
    assert health.notified({'STATUS': 'loading'}, 11.0) is None
    assert health.notified({'READY': '0'}, 11.5) is None and not health.ready
    assert health.notified({'READY': '1', 'STATUS': 'up'}, 12.0) == READY
    assert health.ready and health.status_text == 'up' and health.deadline() is None
    assert health.notified({'READY': '1'}, 13.0) is None          # said once
    assert health.notified({'STOPPING': '1'}, 14.0) is None


def test_notify_alone_not_ready_in_90_s_is_unhealthy_once():
    health = Health(spec(notify=True), 0.0)
    assert health.due(89.9) == []
    assert health.due(90.0) == [unhealthy('not ready after 90 s')]
    assert health.record()['health'] == 'unhealthy'
    assert health.deadline() is None and health.due(200.0) == []


def test_a_check_alone_is_ready_at_its_first_pass():
    health = Health(spec(health=tcp(interval=5)), 0.0)
    assert health.record()['health'] == 'starting' and not health.ready
    assert health.deadline() == pytest.approx(hl.EARLY_FIRST)
    assert health.due(0.05) == []
    assert health.due(0.1) == [RUN_CHECK] and health.seq == 1
    assert health.checked(1, True, 'connected', 0.12) == READY
    assert health.ready and health.record() == {
        'health': 'healthy', 'health_error': None, 'status_text': None}


def test_with_notify_and_a_check_both_are_needed_whatever_comes_first():
    check_first = Health(spec(notify=True, health=tcp()), 0.0)
    check_first.due(0.1)
    assert check_first.checked(1, True, 'connected', 0.1) is None
    assert check_first.record()['health'] == 'healthy' and not check_first.ready
    assert check_first.notified({'READY': '1'}, 0.5) == READY and check_first.ready

    ready_first = Health(spec(notify=True, health=tcp()), 0.0)
    assert ready_first.notified({'READY': '1'}, 0.05) is None and not ready_first.ready
    ready_first.due(0.1)
    assert ready_first.checked(1, True, 'connected', 0.1) == READY


def fail_until_due(health, now, detail='refused'):
    """Run the check due at `now` and fail it at once; the outcome."""
    assert RUN_CHECK in health.due(now)
    return health.checked(health.seq, False, detail, now)


def test_failures_before_the_first_pass_do_not_count():
    health = Health(spec(health=tcp(retries=1, start_period=100)), 0.0)
    now = 0.0
    for _ in range(20):
        now = health.deadline()
        assert fail_until_due(health, now, 'connection refused') is None
    assert health.record() == {'health': 'starting', 'health_error': 'connection refused',
                               'status_text': None}
    now = health.deadline()
    health.due(now)
    assert health.checked(health.seq, True, 'connected', now) == READY
    assert health.record()['health_error'] is None
    # from now on, one failure is enough (retries 1)
    assert fail_until_due(health, health.deadline()) == unhealthy('refused')


def test_retries_in_a_row_then_unhealthy_once_then_recovered():
    health = Health(spec(health=tcp(retries=3, interval=1)), 0.0)
    health.due(0.1)
    health.checked(1, True, 'ok', 0.1)
    assert fail_until_due(health, health.deadline()) is None
    assert fail_until_due(health, health.deadline()) is None
    now = health.deadline()
    health.due(now)
    assert health.checked(health.seq, True, 'ok', now) is None     # a pass resets the count
    assert health.failures == 0
    assert fail_until_due(health, health.deadline()) is None
    assert fail_until_due(health, health.deadline()) is None
    assert fail_until_due(health, health.deadline(), 'HTTP 500 Oops') == unhealthy('HTTP 500 Oops')
    assert health.record()['health'] == 'unhealthy'
    assert fail_until_due(health, health.deadline()) is None       # said once
    assert health.record()['health_error'] == 'refused'             # the latest failure
    now = health.deadline()
    health.due(now)
    assert health.checked(health.seq, True, 'ok', now) == RECOVERED
    assert health.record() == {'health': 'healthy', 'health_error': None, 'status_text': None}


def test_not_ready_within_start_period_is_unhealthy_and_a_later_pass_is_ready():
    health = Health(spec(health=tcp(start_period=3, interval=10)), 100.0)
    now = 100.0
    while True:
        now = health.deadline()
        if now >= 103.0:
            break
        fail_until_due(health, now)
    assert now == 103.0
    assert health.due(103.0) == [unhealthy('not ready after 3 s')]
    assert health.record()['health'] == 'unhealthy'
    assert health.due(103.5) == [RUN_CHECK]                  # checks go on
    assert health.due(200.0) == [KILL_CHECK]                 # "not ready" is said once
    health = Health(spec(health=tcp(start_period=0)), 0.0)
    assert unhealthy('not ready after 0 s') in health.due(0.0)
    health.due(0.1)
    assert health.checked(health.seq, True, 'ok', 0.1) == READY


def test_early_checks_double_from_a_tenth_of_a_second_up_to_one_second_or_interval():
    for interval, expected in ((10, [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0]),
                               (0.5, [0.1, 0.2, 0.4, 0.5, 0.5, 0.5, 0.5]),
                               (0.1, [0.1] * 7)):
        health = Health(spec(health=tcp(interval=interval, start_period=1000)), 0.0)
        gaps, now = [], 0.0
        for _ in expected:
            due = health.deadline()
            gaps.append(round(due - now, 6))
            fail_until_due(health, due)
            now = due
        assert gaps == expected, interval


def test_after_the_first_pass_checks_come_every_interval():
    health = Health(spec(health=tcp(interval=5)), 0.0)
    health.due(0.1)
    health.checked(1, True, 'ok', 0.1)
    assert health.deadline() == pytest.approx(5.1)


def test_checks_never_overlap():
    health = Health(spec(health=tcp(interval=1, timeout=1, start_period=1000)), 0.0)
    assert health.due(0.1) == [RUN_CHECK]
    for now in (0.2, 0.5, 0.9, 1.05):            # past the next interval: still one check
        assert RUN_CHECK not in health.due(now)
    assert health.seq == 1
    assert health.deadline() == pytest.approx(1.1)   # its timeout


def test_a_check_outliving_its_timeout_is_to_be_killed():
    health = Health(spec(health={'exec': ['/bin/check'], 'interval': 10, 'timeout': 2}), 0.0)
    health.due(0.1)
    assert health.due(2.09) == []
    assert health.due(2.1) == [KILL_CHECK]
    # its end (killed) is a failure like any other; the next check is scheduled
    assert health.checked(1, False, 'killed by signal 9', 2.11) is None
    assert health.running_since is None and health.deadline() > 2.11


def test_kill_check_is_asked_once_and_the_deadline_moves_on():
    health = Health(spec(health={'exec': ['/bin/check'], 'interval': 10, 'timeout': 2}), 0.0)
    health.due(0.1)
    assert health.due(2.1) == [KILL_CHECK]
    assert health.deadline() > 2.1
    assert health.due(2.2) == []


def test_a_stale_or_repeated_check_result_is_ignored():
    health = Health(spec(health=tcp(interval=1)), 0.0)
    health.due(0.1)
    assert health.checked(0, True, 'an older check', 0.15) is None
    assert health.checked(2, True, 'a future check?', 0.15) is None
    assert not health.ready and health.running_since == 0.1
    assert health.checked(1, True, 'ok', 0.2) == READY
    assert health.checked(1, False, 'said twice', 0.25) is None
    assert health.record()['health'] == 'healthy'


def test_watchdog_counts_from_the_latest_watchdog_1():
    health = Health(spec(notify=True, watchdog=2), 0.0)
    assert health.deadline() == hl.NOTIFY_START_TIMEOUT      # no watchdog before ready
    assert health.notified({'READY': '1', 'WATCHDOG': '1'}, 1.0) == READY
    assert health.deadline() == 3.0
    assert health.notified({'WATCHDOG': '1'}, 2.5) is None
    assert health.due(4.4) == [] and health.deadline() == 4.5
    assert health.notified({'WATCHDOG': '0'}, 4.0) is None        # not a keep-alive
    assert health.due(4.5) == [unhealthy('no WATCHDOG=1 for 2 s')]
    assert health.record()['health'] == 'unhealthy' and health.deadline() is None
    assert health.due(10.0) == []                                  # said once


def test_watchdog_counts_from_ready_not_from_the_start():
    health = Health(spec(notify=True, watchdog=1), 0.0)
    assert health.notified({'READY': '1'}, 5.0) == READY
    assert health.due(5.01) == []
    assert health.deadline() == 6.0


def test_an_adopted_ready_process_keeps_its_health_and_is_checked_at_its_pace():
    health = Health(spec(notify=True, watchdog=4, health=tcp(interval=5)), 50.0, ready=True,
                    status='healthy')
    assert health.ready and health.record()['health'] == 'healthy'
    assert health.deadline() == 54.0          # the watchdog counts from the adoption
    health.notified({'WATCHDOG': '1'}, 52.0)
    assert health.deadline() == 55.0          # the first check: at the normal pace
    assert health.due(55.0) == [RUN_CHECK]
    assert health.checked(1, True, 'ok', 55.0) is None
    sick = Health(spec(health=tcp(interval=5)), 50.0, ready=True, status='unhealthy')
    assert sick.ready and sick.record()['health'] == 'unhealthy'
    sick.due(55.0)
    assert sick.checked(1, True, 'ok', 55.0) == RECOVERED


def test_status_text_is_bounded_and_kept():
    health = Health(spec(notify=True), 0.0)
    health.notified({'STATUS': 'é' * 5000}, 1.0)
    assert health.status_text == 'é' * hl.TEXT_KEPT


# ===================================================================== the policy

def terms(out):
    return [a.name for a in of(act.SendSignal, out) if a.signum == signal.SIGTERM]


def test_a_notify_process_is_starting_until_ready_1_from_itself():
    world = World(notifying('a'))
    assert world.state('a') == lc.STARTING and world.pids['a']
    assert 'a: started, not ready yet (pid 1001)' in logged(world.out)
    assert not lc.as_desired(world.record('a'))
    out = world.notify('a', 'READY=1\nSTATUS=Accepting connections', 1.0)
    assert world.state('a') == lc.RUNNING and 'a: ready' in logged(out)
    record = world.record('a')
    assert record['status_text'] == 'Accepting connections' and lc.as_desired(record)


def test_sd_notify_from_outside_the_tree_is_ignored_and_said():
    world = World(notifying('a'))
    out = world.notify('a', 'READY=1', 1.0, pid=4242, lineage=(4000, 300), cgroup='/user.slice')
    assert world.state('a') == lc.STARTING
    assert 'a: ignored sd_notify from pid 4242, which is not in its tree' in logged(out)
    # ...and it is not said again for every datagram of a flood
    flood = [m for i in range(50)
             for m in logged(world.notify('a', 'READY=1', 1.0 + i / 1000, pid=4242))]
    assert len(flood) <= 2
    world.notify('a', 'STATUS=forged', 2.0, pid=4243)
    assert world.record('a')['status_text'] is None


def test_sd_notify_from_a_descendant_or_from_its_cgroup_is_heard():
    world = World(notifying('a'), notifying('b'))
    world.notify('a', 'READY=1', 1.0, pid=5000, lineage=(4999, world.pids['a'], 1))
    assert world.state('a') == lc.RUNNING
    # a grandchild re-parented away (double fork) still lives in the process's cgroup
    world.notify('b', 'READY=1', 1.0, pid=6000, lineage=(77,), cgroup='/diprocd/w/b')
    assert world.state('b') == lc.RUNNING


def test_ready_1_of_a_daemon_sent_before_it_is_found_counts():
    daemon = notifying('d', daemon=True, pid_file='/run/d.pid', write_pid=False)
    policy = WorkerPolicy()
    policy.handle(ev.ConfigLoaded(config(daemon)), 0.0)
    policy.handle(ev.TreeEmptied('d'), 0.0)
    policy.handle(ev.ProcessStarted('d', 700, (50, 700), '/diprocd/w/d'), 0.0)
    policy.handle(ev.Notified('d', {'READY': '1'}, 705, (1,), '/diprocd/w/d'), 0.02)
    policy.handle(ev.DaemonFound('d', 705, (51, 701)), 0.05)
    assert policy.procs['d'].state == lc.RUNNING


def test_sd_notify_for_one_process_does_not_make_another_ready():
    world = World(notifying('a'), notifying('b'))
    world.notify('a', 'READY=1', 1.0, pid=world.pids['b'], cgroup='/diprocd/w/b')
    assert world.state('a') == lc.STARTING


def test_a_health_checked_process_is_running_at_its_first_pass():
    world = World(proc('a', health=tcp(interval=5)))
    assert world.state('a') == lc.STARTING and world.record('a')['health'] == 'starting'
    out = world.until(0.1)
    [run] = of(act.RunCheck, out)
    assert run.seq == 1 and run.spec.health.probe.port == 8080
    world.handle(ev.CheckDone('a', 1, False, 'refused'), 0.1)
    assert world.state('a') == lc.STARTING and world.record('a')['health_error'] == 'refused'
    world.check('a', True, 0.35)                      # the next one: 0.2 s later
    assert world.state('a') == lc.RUNNING and world.record('a')['health'] == 'healthy'


def test_unhealthy_is_a_restart_counted_as_a_crash_and_never_healthy_ends_in_backoff():
    world = World(proc('a', stop_timeout=1, health=tcp(interval=0.2, start_period=0.5)),
                  answers={'a': (False, '127.0.0.1:8080: Connection refused')})
    now, starts = 0.0, 1
    while world.state('a') != lc.BACKOFF:
        assert starts <= 5, 'more than 5 starts in a minute'
        out = world.until(now + 0.5)
        now += 0.5
        [reason] = [m for m in logged(out, logging.WARNING) if 'unhealthy' in m]
        assert reason == 'a: unhealthy: not ready after 0.5 s; restarting it'
        assert terms(out) == ['a']
        out = world.stopped('a', now)
        starts += len(of(act.Spawn, out))
    assert starts == 5 and world.policy.procs['a'].restarts == 4
    assert world.timer('a') == pytest.approx(60.0)       # the first start + 60 s
    assert 'a: started 5 times in 60 s; next start in 57.5 s' in logged(out)


def test_a_process_in_backoff_for_being_unhealthy_says_why_in_its_record():
    world = World(proc('a', stop_timeout=1, health=tcp(interval=0.2, start_period=0.5)),
                  answers={'a': (False, '127.0.0.1:8080: Connection refused')})
    now = 0.0
    while world.state('a') != lc.BACKOFF:
        world.until(now + 0.5)
        now += 0.5
        world.stopped('a', now)
    record = world.record('a')
    assert 'not ready after 0.5 s' in '%s %s' % (record['health_error'], record['error'])


def test_unhealthy_after_ready_restarts_and_the_new_run_is_checked_afresh():
    world = World(proc('a', stop_timeout=1, health=tcp(interval=1, retries=2)))
    world.check('a', True, 0.1)
    first = world.pids['a']
    world.check('a', False, 1.1)
    assert world.state('a') == lc.RUNNING
    out = world.check('a', False, 2.1, detail='127.0.0.1:8080: Connection refused')
    assert 'a: unhealthy: 127.0.0.1:8080: Connection refused; restarting it' in logged(out)
    assert terms(out) == ['a'] and world.state('a') == lc.STOPPING
    out = world.stopped('a', 2.2)
    assert of(act.Spawn, out) and world.pids['a'] != first
    assert world.state('a') == lc.STARTING and world.policy.procs['a'].restarts == 1
    assert len(world.policy.procs['a'].window.starts) == 2     # counted
    assert world.record('a')['health'] == 'starting'
    world.check('a', True, 2.35)
    assert world.state('a') == lc.RUNNING


def test_on_unhealthy_none_only_says_it():
    world = World(proc('a', health=tcp(interval=1, retries=1, on_unhealthy='none')))
    world.check('a', True, 0.1)
    out = world.check('a', False, 1.1, detail='HTTP 500 Internal Server Error')
    assert 'a: unhealthy: HTTP 500 Internal Server Error' in logged(out)
    assert not of(act.SendSignal, out) and world.state('a') == lc.RUNNING
    record = world.record('a')
    assert record['health'] == 'unhealthy' and not lc.as_desired(record)
    out = world.check('a', True, 2.1)
    assert 'a: healthy again' in logged(out) and lc.as_desired(world.record('a'))


def test_missed_watchdog_restarts_it():
    world = World(notifying('a', watchdog=1, stop_timeout=1))
    world.notify('a', 'READY=1\nWATCHDOG=1', 0.5)
    world.notify('a', 'WATCHDOG=1', 1.2)
    assert not terms(world.until(2.1))
    out = world.until(2.2)
    assert 'a: unhealthy: no WATCHDOG=1 for 1 s; restarting it' in logged(out)
    assert terms(out) == ['a']


def test_notify_without_ready_in_90_s_restarts_it():
    world = World(notifying('a', stop_timeout=1))
    assert world.policy.timers.get(('health', 'a')) == 90.0
    assert not terms(world.until(89.9))
    out = world.until(90.0)
    assert 'a: unhealthy: not ready after 90 s; restarting it' in logged(out)


def test_checks_stop_with_the_process_and_a_late_result_changes_nothing():
    world = World(proc('a', stop_timeout=1, restart=False, health=tcp(interval=1)))
    world.check('a', True, 0.1)
    world.until(1.1)                                  # check 2 running
    world.handle(ev.ProcessExited('a', world.pids['a'], 0, None), 1.2)
    assert world.state('a') == lc.EXITED
    assert world.policy.timers.get(('health', 'a')) is None
    world.handle(ev.CheckDone('a', 2, False, 'late'), 1.3)
    assert world.state('a') == lc.EXITED and world.record('a')['health'] is None


def test_an_exec_check_running_when_its_process_ends_is_killed():
    world = World(proc('a', stop_timeout=1,
                       health={'exec': ['/bin/check'], 'interval': 1, 'timeout': 1}))
    world.check('a', True, 0.1)
    assert world.state('a') == lc.RUNNING
    assert of(act.RunCheck, world.until(1.15))       # check 2 running, not timed out yet
    out = world.crash('a', 1.2)
    assert of(act.Spawn, out), 'restarted'
    assert [k.name for k in of(act.KillCheck, out)] == ['a']


def test_a_check_of_the_previous_run_does_not_decide_the_new_run():
    world = World(proc('a', stop_timeout=1,
                       health={'exec': ['/bin/check'], 'interval': 1, 'timeout': 1}))
    world.check('a', True, 0.1)
    [old] = of(act.RunCheck, world.until(1.15))     # check 2 of the first run
    world.crash('a', 1.2)                           # restarted; that check still runs
    world.check('a', False, 1.3)                    # the new run's check 1 fails
    [new] = of(act.RunCheck, world.until(1.5))      # its check 2 runs
    assert new.seq != old.seq, 'numbers go on across runs'
    world.handle(ev.CheckDone('a', old.seq, True, 'the first run\'s check'), 1.55)
    assert world.state('a') == lc.STARTING, 'the old run\'s check made the new one ready'


def test_an_exec_check_outliving_its_timeout_is_killed():
    world = World(proc('a', health={'exec': ['/bin/check'], 'interval': 10, 'timeout': 2}))
    world.until(0.1)
    assert not of(act.KillCheck, world.until(2.09))
    out = world.tick(2.1)
    assert [k.name for k in of(act.KillCheck, out)] == ['a']
    # killed, it ends as a failure (before the first pass: not counted)
    world.handle(ev.CheckDone('a', 1, False, 'killed by signal 9'), 2.11)
    assert world.state('a') == lc.STARTING and world.policy.next_deadline() > 2.11


def test_an_exec_check_that_cannot_start_does_not_spin_the_policy():
    world = World(proc('a', health={'exec': ['/bin/check'], 'interval': 10, 'timeout': 2}))
    world.until(0.1)
    world.tick(2.1)                                   # KillCheck; no CheckDone comes
    assert world.policy.next_deadline() > 2.1
    kills = sum(len(of(act.KillCheck, world.tick(2.1 + i / 1000))) for i in range(1, 20))
    assert kills == 0


# ------------------------------------------------------------ depends

def chain_world(**keys):
    """c depends on b, b on a; listed dependents first; each notifies."""
    return World(notifying('c', depends=['b'], stop_timeout=2, **keys),
                 notifying('b', depends=['a'], stop_timeout=2, **keys),
                 notifying('a', stop_timeout=2, **keys))


def ready_all(world, now=0.5):
    for name in ('a', 'b', 'c'):
        world.notify(name, 'READY=1', now)


def test_dependents_wait_and_start_once_what_they_need_is_ready():
    world = chain_world()
    assert world.spawned == ['a']
    assert world.state('b') == world.state('c') == lc.WAITING
    assert world.record('c')['waiting_for'] == ['b'] and not lc.as_desired(world.record('c'))
    assert 'c: waiting for b' in logged(world.out)
    world.notify('a', 'READY=1', 0.5)
    assert world.spawned == ['a', 'b'] and world.state('c') == lc.WAITING
    world.notify('b', 'READY=1', 0.7)
    assert world.spawned == ['a', 'b', 'c']
    world.notify('c', 'READY=1', 0.9)
    assert all(world.state(n) == lc.RUNNING for n in 'abc')
    assert all(world.record(n)['waiting_for'] is None for n in 'abc')


def test_a_dependency_without_readiness_lets_its_dependents_start_at_once():
    world = World(proc('app', depends=['db']), proc('db'))
    assert world.spawned == ['db', 'app']


def test_several_dependencies_are_all_awaited():
    world = World(proc('app', depends=['db', 'cache']), notifying('db'), notifying('cache'))
    world.notify('db', 'READY=1', 0.5)
    assert world.state('app') == lc.WAITING and world.record('app')['waiting_for'] == ['cache']
    world.notify('cache', 'READY=1', 0.6)
    assert world.state('app') == lc.RUNNING


def test_a_one_shot_gates_its_dependent_until_it_exits_0():
    world = World(proc('app', depends=['migrate']), proc('migrate', restart=False),
                  proc('app2', depends=['migrate2']), proc('migrate2', restart=False))
    assert world.spawned == ['migrate', 'migrate2']
    assert world.state('app') == world.state('app2') == lc.WAITING
    world.handle(ev.ProcessExited('migrate', world.pids['migrate'], 0, None), 1.0)
    assert world.spawned[2:] == ['app'] and world.state('app') == lc.RUNNING
    world.handle(ev.ProcessExited('migrate2', world.pids['migrate2'], 1, None), 1.0)
    assert world.state('migrate2') == lc.EXITED and world.state('app2') == lc.WAITING
    assert world.record('app2')['waiting_for'] == ['migrate2']
    assert not lc.as_desired(world.record('app2')) and lc.as_desired(world.record('migrate2'))


def test_one_shots_that_ended_before_a_worker_restart_decide_at_once():
    """A worker restarted on the same boot does not run a one-shot again: its
    recorded exit decides (0: its dependent starts; 1: it waits)."""
    from dpd.worker.records import definition_record
    entries = (proc('app', depends=['migrate']), proc('migrate', restart=False),
               proc('app2', depends=['migrate2']), proc('migrate2', restart=False))
    specs = {s.name: s for s in config(*entries).procs}
    finished = tuple({'name': name, 'pid': None, 'started': None, 'state': 'exited',
                      'fingerprint': specs[name].fingerprint,
                      'definition': definition_record(specs[name]),
                      'last_exit': {'code': code, 'signal': None, 'at': 5.0}}
                     for name, code in (('migrate', 0), ('migrate2', 1)))
    policy = WorkerPolicy()
    policy.handle(ev.PreviousRun((), finished), 10.0)
    out = policy.handle(ev.ConfigLoaded(config(*entries)), 10.0)
    assert [a.name for a in of(act.ClearTree, out)] == ['app']
    assert policy.procs['app2'].state == lc.WAITING
    assert 'app2: waiting for migrate2' in logged(out)


def test_a_process_that_dies_before_it_is_ready_is_restarted_at_once():
    world = World(notifying('a'), proc('b', health=tcp()))
    for name in ('a', 'b'):
        first = world.pids[name]
        out = world.handle(ev.ProcessExited(name, first, 1, None), 0.5)
        assert '%s: exited with status 1' % name in logged(out)
        assert of(act.Spawn, out) and world.pids[name] != first
        assert world.state(name) == lc.STARTING and world.policy.procs[name].restarts == 1


def test_term_stops_dependents_first():
    world = chain_world()
    ready_all(world)
    out = world.handle(ev.SignalReceived(signal.SIGTERM), 1.0)
    assert terms(out) == ['c'] and set(world.policy.deferred) == {'a', 'b'}
    assert world.state('a') == world.state('b') == lc.RUNNING
    out = world.stopped('c', 1.1)
    assert terms(out) == ['b'] and not of(act.Exit, out)
    out = world.stopped('b', 1.2)
    assert terms(out) == ['a'] and not of(act.Exit, out)
    out = world.stopped('a', 1.3)
    assert of(act.Exit, out) and world.policy.deferred == {}


def test_a_dependency_whose_dependent_will_not_stop_is_stopped_after_its_kill():
    world = chain_world()
    ready_all(world)
    world.handle(ev.SignalReceived(signal.SIGTERM), 1.0)
    out = world.until(3.0)                                       # c's stop_timeout: KILL
    assert [a.signum for a in of(act.SendSignal, out)] == [signal.SIGKILL]
    out = world.handle(ev.ProcessExited('c', world.pids['c'], None, 9), 3.1)
    out += world.handle(ev.GroupChecked('c', world.pids['c'], False), 3.1)
    assert terms(out) == ['b']


def test_removing_a_dependency_with_its_dependent_stops_the_dependent_first():
    world = chain_world()
    ready_all(world)
    out = world.handle(ev.ConfigLoaded(config(notifying('a', stop_timeout=2))), 1.0)
    assert terms(out) == ['c'] and world.state('b') == lc.RUNNING
    out = world.stopped('c', 1.1)
    assert terms(out) == ['b'] and 'c: removed' in logged(out)
    out = world.stopped('b', 1.2)
    assert 'b: removed' in logged(out)
    assert list(world.policy.procs) == ['a'] and world.state('a') == lc.RUNNING


def test_an_empty_list_stops_dependents_first_then_forgets_everything():
    world = chain_world()
    ready_all(world)
    out = world.handle(ev.ConfigLoaded(config()), 1.0)
    assert terms(out) == ['c']
    assert terms(world.stopped('c', 1.1)) == ['b']
    assert terms(world.stopped('b', 1.2)) == ['a']
    world.stopped('a', 1.3)
    assert world.policy.procs == {} and world.policy.deferred == {}


def test_a_removed_dependency_put_back_before_its_turn_keeps_running():
    world = chain_world()
    ready_all(world)
    world.handle(ev.ConfigLoaded(config(notifying('a', stop_timeout=2))), 1.0)
    # b is back while c is still stopping: b stays, only c goes
    world.handle(ev.ConfigLoaded(config(notifying('b', depends=['a'], stop_timeout=2),
                                        notifying('a', stop_timeout=2))), 1.05)
    out = world.stopped('c', 1.1)
    assert not terms(out) and world.state('b') == lc.RUNNING
    assert set(world.policy.procs) == {'a', 'b'}


def test_a_dependency_dropped_by_an_edit_no_longer_holds_up_a_stop():
    """Who depends on whom is read from the definitions in force: once b's edit drops
    its dependency on a, removing a stops it at once instead of waiting for b."""
    world = World(notifying('b', depends=['a'], stop_timeout=2), notifying('a', stop_timeout=2))
    world.notify('a', 'READY=1', 0.5)
    world.notify('b', 'READY=1', 0.6)
    out = world.handle(ev.ConfigLoaded(config(notifying('b', stop_timeout=2),
                                              notifying('a', stop_timeout=2))), 1.0)
    assert terms(out) == ['b'], 'a new definition: b is stopped and started again'
    world.stopped('b', 1.1)
    world.notify('b', 'READY=1', 1.2)
    assert world.state('b') == lc.RUNNING
    out = world.handle(ev.ConfigLoaded(config(notifying('b', stop_timeout=2))), 2.0)
    assert terms(out) == ['a'] and world.policy.deferred == {}
    world.stopped('a', 2.1)
    assert set(world.policy.procs) == {'b'} and world.state('b') == lc.RUNNING


def test_a_dependency_that_restarts_does_not_restart_its_dependents():
    world = chain_world()
    ready_all(world)
    before = dict(world.pids)
    out = world.crash('a', 1.0)
    assert world.spawned[3:] == ['a'] and not of(act.SendSignal, out)
    assert world.state('b') == world.state('c') == lc.RUNNING
    world.notify('a', 'READY=1', 1.5)
    assert world.spawned[3:] == ['a']
    assert (world.pids['b'], world.pids['c']) == (before['b'], before['c'])


def test_a_dependency_restarted_for_being_unhealthy_does_not_restart_its_dependent():
    world = World(proc('app', depends=['db']),
                  proc('db', stop_timeout=1, health=tcp(interval=1, retries=1)))
    world.check('db', True, 0.1)
    assert world.spawned == ['db', 'app']
    out = world.check('db', False, 1.1)
    assert terms(out) == ['db']
    out = world.stopped('db', 1.2)
    assert world.spawned == ['db', 'app', 'db'] and world.state('app') == lc.RUNNING
    assert world.policy.procs['db'].restarts == 1


def test_a_dependent_that_ends_while_its_dependency_is_down_waits_again():
    world = World(notifying('app', depends=['db']), notifying('db'))
    world.notify('db', 'READY=1', 0.5)
    world.notify('app', 'READY=1', 0.6)
    world.crash('db', 1.0)                              # db: starting again
    out = world.crash('app', 1.1)
    assert not of(act.Spawn, out) and world.state('app') == lc.WAITING
    world.notify('db', 'READY=1', 1.5)
    assert world.state('app') == lc.STARTING


def test_a_dependency_in_backoff_keeps_its_dependent_waiting():
    world = World(notifying('app', depends=['db']), notifying('db'))
    world.notify('db', 'READY=1', 0.5)
    world.notify('app', 'READY=1', 0.6)
    for i in range(5):
        world.crash('db', 1.0 + i)
        if world.state('db') == lc.STARTING:
            world.notify('db', 'READY=1', 1.1 + i)
    assert world.state('db') == lc.BACKOFF
    world.crash('app', 5.5)
    assert world.state('app') == lc.WAITING and world.record('app')['waiting_for'] == ['db']
    world.until(world.timer('db'))
    assert world.state('db') == lc.STARTING and world.state('app') == lc.WAITING
    world.notify('db', 'READY=1', 61.0)
    assert world.state('app') == lc.STARTING


def test_adopted_processes_keep_their_readiness():
    from dpd.worker.records import definition_record
    a = config(proc('a', health=tcp(interval=5))).procs[0]
    n = config(notifying('n')).procs[0]
    records = []
    for s, pid, state, health in ((a, 501, 'running', 'healthy'), (n, 502, 'starting', None)):
        records.append({'name': s.name, 'pid': pid, 'started': [1, pid], 'state': state,
                        'fingerprint': s.fingerprint, 'definition': definition_record(s),
                        'health': health, 'starts': [0.0], 'restarts': 0, 'since': 0.0})
    policy = WorkerPolicy()
    policy.handle(ev.PreviousRun(tuple(records), ()), 100.0)
    out = policy.handle(ev.ConfigLoaded(config(proc('a', health=tcp(interval=5)),
                                               notifying('n'))), 100.0)
    assert not of(act.Spawn, out) and not of(act.SendSignal, out)
    assert policy.procs['a'].state == lc.RUNNING and policy.procs['n'].state == lc.STARTING
    assert policy.procs['a'].health.record()['health'] == 'healthy'
    assert policy.timers.get(('health', 'a')) == 105.0        # checks resume at their pace
    policy.handle(ev.Notified('n', {'READY': '1'}, 502, (), None), 101.0)
    assert policy.procs['n'].state == lc.RUNNING


def test_many_health_timers_are_one_heap():
    world = World(*[proc('p%d' % i, health=tcp(interval=10)) for i in range(200)])
    out = world.until(0.1)
    assert len(of(act.RunCheck, out)) == 200
    for i in range(200):
        world.handle(ev.CheckDone('p%d' % i, 1, True, 'ok'), 0.2)
    assert all(world.state('p%d' % i) == lc.RUNNING for i in range(200))


def test_outcome_equality_and_repr():
    assert Outcome('ready') == READY and Outcome('ready') != Outcome('unhealthy', 'x')
    assert repr(unhealthy('x')) == "Outcome('unhealthy', 'x')"
    assert READY != 'ready'
