"""PROCESS key `limits` (SPEC 6.2) as pure functions: sizes, rlimits, CPUs, the
nested object's JSON paths, and fingerprints that an upgrade leaves alone."""
import hashlib

import pytest

from dpd import jsonfile, limitspec
from dpd.cluster.config import parse_master
from dpd.config import ConfigError
from dpd.procspec import spec_from_record
from dpd.schema import Invalid
from dpd.worker import adoption
from dpd.worker.config import parse_worker

PATH = '/etc/diprocd/diprocd-worker.json'
SIZE_PROBLEM = 'must be a number of bytes or a size such as "512M" or "2G" (K, M, G, T), not '


def entry(limits, name='x', **keys):
    return dict({'name': name, 'run': '/bin/sleep', 'args': ['1000'], 'limits': limits}, **keys)


def parse(*procs):
    return parse_worker({'procs': list(procs)}, PATH, 'nobody')


def problems(*procs):
    with pytest.raises(ConfigError) as caught:
        parse(*procs)
    return caught.value.messages


# ---------------------------------------------------------------- sizes

@pytest.mark.parametrize('text, value', [
    ('512M', 512 << 20), ('2G', 2 << 30), ('1K', 1024), ('3T', 3 << 40), ('0K', 0),
    (1024, 1024), (0, 0), (2 ** 63 - 1, 2 ** 63 - 1)])
def test_sizes_accepted(text, value):
    assert limitspec.size(text) == value
    assert parse(entry({'memory_max': text})).procs[0].limits.memory_max == value


@pytest.mark.parametrize('value, problem', [
    ('12Q', SIZE_PROBLEM + '"12Q"'),
    ('1.5G', SIZE_PROBLEM + '"1.5G"'),
    ('512m', SIZE_PROBLEM + '"512m"'),
    ('512', SIZE_PROBLEM + '"512"'),                 # a string needs its suffix
    ('512MB', SIZE_PROBLEM + '"512MB"'),
    (' 512M', SIZE_PROBLEM + '" 512M"'),
    ('512M\n', SIZE_PROBLEM + '"512M\\n"'),
    ('-1M', SIZE_PROBLEM + '"-1M"'),
    ('M', SIZE_PROBLEM + '"M"'),
    ('', SIZE_PROBLEM + '""'),
    ('\uff15\uff11\uff12M', SIZE_PROBLEM + '"\\uff15\\uff11\\uff12M"'),   # fullwidth digits
    ('unlimited', SIZE_PROBLEM + '"unlimited"'),
    ('9999999999T', 'is too large'),
    (-1, 'must be between 0 and 9223372036854775807, not -1'),
    (2 ** 63, 'must be between 0 and 9223372036854775807, not 9223372036854775808'),
    (1.5, 'must be an integer, not a number'),
    (512.0, 'must be an integer, not a number'),
    (True, 'must be an integer, not true'),
    (None, 'must be an integer, not null'),
    ([512], 'must be an integer, not a list'),
])
def test_sizes_rejected_with_the_json_path(value, problem):
    for key in ('memory_max', 'memory_high'):
        assert problems(entry({key: value})) == ['procs[0] ("x").limits.%s: %s' % (key, problem)]


# ---------------------------------------------------------------- rlimits

@pytest.mark.parametrize('name', limitspec.RLIMITS)
def test_every_rlimit_takes_an_integer_or_unlimited(name):
    for value in (0, 1024, 2 ** 63 - 1, 'unlimited'):
        limits = parse(entry({name: value})).procs[0].limits
        assert limits.rlimits == ((name, value),) and limits.cgroup == {}
    for value, problem in (('10', 'must be an integer or "unlimited", not "10"'),
                           ('Unlimited', 'must be an integer or "unlimited", not "Unlimited"'),
                           ('1M', 'must be an integer or "unlimited", not "1M"'),
                           (-1, 'must be between 0 and 9223372036854775807, not -1'),
                           (1.5, 'must be an integer, not a number'),
                           (1.0, 'must be an integer, not a number'),
                           (False, 'must be an integer, not false'),
                           (None, 'must be an integer, not null'),
                           ({}, 'must be an integer, not an object')):
        assert problems(entry({name: value})) == ['procs[0] ("x").limits.%s: %s'
                                                  % (name, problem)], (name, value)


def test_rlimits_are_kept_in_one_order_whatever_the_file_says():
    limits = parse(entry({'cpu': 10, 'nofile': 100, 'as': 'unlimited'})).procs[0].limits
    assert limits.rlimits == (('nofile', 100), ('as', 'unlimited'), ('cpu', 10))


# ---------------------------------------------------------------- tree limits

@pytest.mark.parametrize('limits, problem', [
    ({'cpu_max': 0}, 'cpu_max: must be between 0.001 and 4096 CPUs, not 0'),
    ({'cpu_max': 0.0001}, 'cpu_max: must be between 0.001 and 4096 CPUs, not 0.0001'),
    ({'cpu_max': -1}, 'cpu_max: must be between 0.001 and 4096 CPUs, not -1'),
    ({'cpu_max': 4097}, 'cpu_max: must be between 0.001 and 4096 CPUs, not 4097'),
    ({'cpu_max': '0.5'}, 'cpu_max: must be a number of CPUs such as 0.5, not a string'),
    ({'cpu_max': True}, 'cpu_max: must be a number of CPUs such as 0.5, not true'),
    ({'cpu_weight': 0}, 'cpu_weight: must be between 1 and 10000, not 0'),
    ({'cpu_weight': 10001}, 'cpu_weight: must be between 1 and 10000, not 10001'),
    ({'cpu_weight': 100.0}, 'cpu_weight: must be an integer, not a number'),
    ({'cpu_weight': '100'}, 'cpu_weight: must be an integer, not a string'),
    ({'pids_max': 0}, 'pids_max: must be between 1 and 4194304, not 0'),
    ({'pids_max': -5}, 'pids_max: must be between 1 and 4194304, not -5'),
    ({'pids_max': 4194305}, 'pids_max: must be between 1 and 4194304, not 4194305'),
    ({'pids_max': 1.5}, 'pids_max: must be an integer, not a number'),
    ({'pids_max': 'max'}, 'pids_max: must be an integer, not a string'),
])
def test_tree_limits_rejected_with_the_json_path(limits, problem):
    assert problems(entry(limits)) == ['procs[0] ("x").limits.' + problem]


def test_tree_limits_accepted():
    limits = parse(entry({'memory_max': '512M', 'memory_high': '256M', 'cpu_max': 0.5,
                          'cpu_weight': 200, 'pids_max': 64, 'nofile': 4096})).procs[0].limits
    assert limits.cgroup == {'memory_max': 512 << 20, 'memory_high': 256 << 20, 'cpu_max': 0.5,
                             'cpu_weight': 200, 'pids_max': 64}
    assert limits.record == dict(limits.cgroup, nofile=4096)
    assert parse(entry({'cpu_max': 2})).procs[0].limits.cpu_max == 2.0
    for weight in (1, 10000):
        assert parse(entry({'cpu_weight': weight})).procs[0].limits.cpu_weight == weight
    for cpus in (0.001, 4096):
        assert parse(entry({'cpu_max': cpus})).procs[0].limits.cpu_max == cpus


def test_unknown_limit_names_get_a_hint_at_the_limits_path():
    assert problems(entry({'memory_maxx': '1G'})) == [
        'procs[0] ("x").limits: unknown key "memory_maxx" (did you mean "memory_max"?)']
    assert problems(entry({'nofiles': 10})) == [
        'procs[0] ("x").limits: unknown key "nofiles" (did you mean "nofile"?)']
    assert problems(entry({'swappiness': 1})) == [
        'procs[0] ("x").limits: unknown key "swappiness"']


@pytest.mark.parametrize('value, kind', [([], 'a list'), ('512M', 'a string'), (1, 'a number'),
                                         (True, 'true'), (None, 'null')])
def test_limits_must_be_an_object(value, kind):
    assert problems(entry(value)) == ['procs[0] ("x").limits: must be an object, not %s' % kind]


def test_every_problem_is_said_and_the_whole_file_rejected():
    messages = problems(entry({'memory_max': '1G'}, name='fine'),
                        entry({'memory_max': '12Q', 'nofile': '10', 'cpu_weight': 0,
                               'pids_max': 0, 'bogus': 1}, name='bad'),
                        entry({'cpu_max': 0}))
    assert sorted(messages) == sorted([
        'procs[1] ("bad").limits.memory_max: ' + SIZE_PROBLEM + '"12Q"',
        'procs[1] ("bad").limits.nofile: must be an integer or "unlimited", not "10"',
        'procs[1] ("bad").limits.cpu_weight: must be between 1 and 10000, not 0',
        'procs[1] ("bad").limits.pids_max: must be between 1 and 4194304, not 0',
        'procs[1] ("bad").limits: unknown key "bogus"',
        'procs[2] ("x").limits.cpu_max: must be between 0.001 and 4096 CPUs, not 0'])


def test_a_master_node_list_with_bad_limits_marks_only_that_node():
    doc = {'master_stats': 'tcp://127.0.0.1:1', 'master_updates': 'tcp://127.0.0.1:2',
           'nodes': {'good': [entry({'memory_max': '2G'})],
                     'bad': [entry({'memory_max': '1.5G'})]}}
    config = parse_master(doc, '/etc/m.json')
    assert config.nodes['good'].errors == ()
    assert config.nodes['bad'].errors == (
        'nodes["bad"][0] ("x").limits.memory_max: ' + SIZE_PROBLEM + '"1.5G"',)


# ---------------------------------------------------------------- how limits are said

@pytest.mark.parametrize('name, value, text', [
    ('memory_max', 512 << 20, '512M'), ('memory_max', 2 << 30, '2G'),
    ('memory_max', 1536 << 20, '1536M'), ('memory_high', 3 << 40, '3T'),
    ('memory_max', 1000, '1000'), ('memory_max', 0, '0'), ('cpu_max', 0.5, '0.5'),
    ('pids_max', 64, '64')])
def test_describe(name, value, text):
    assert limitspec.describe(name, value) == text


# ---------------------------------------------------------------- fingerprints, records

UPGRADE_DOC = {'procs': [
    {'name': 'web', 'run': '/usr/bin/python3', 'args': ['-m', 'http.server', '8080'],
     'env': {'B': '2', 'A': '1'}, 'umask': '027', 'stop_timeout': 3, 'user': 'www-data'},
    {'name': 'plain', 'run': '/bin/sleep', 'args': ['1000']}]}
# computed by the code before `limits` existed (f038fdb~1:dpd/procspec.py) on UPGRADE_DOC
FINGERPRINTS_BEFORE_LIMITS = {
    'web': '4161ef5555ce15c6cc61ea3d84e7d186784ce8572aba4f11f881452edf0c38de',
    'plain': '197ee4c31e264bd641a0ee27f97ef91ab00fcc2f5cdc3ebe96669ec4f28c86e4'}
FIELDS_BEFORE_LIMITS = ('name', 'run', 'args', 'user', 'env', 'chroot', 'cwd', 'pid_file',
                        'write_pid', 'logs', 'daemon', 'restart', 'group', 'umask',
                        'stop_signal', 'stop_timeout')


def old_fingerprint(spec):
    """f038fdb~1's formula: every field of the first round, canonical JSON, sha256."""
    fields = {name: getattr(spec, name) for name in FIELDS_BEFORE_LIMITS}
    return hashlib.sha256(jsonfile.dumps(fields).encode()).hexdigest()


def test_a_definition_without_limits_keeps_its_fingerprint_so_upgrades_restart_nothing():
    config = parse_worker(UPGRADE_DOC, PATH, 'nobody')
    assert {spec.name: spec.fingerprint for spec in config.procs} == FINGERPRINTS_BEFORE_LIMITS
    for doc in ({'name': 'a', 'run': '/bin/true'},
                {'name': 'b', 'run': '/bin/true', 'chroot': '/srv', 'cwd': 'x', 'logs': '/l',
                 'pid_file': '/p', 'restart': False, 'stop_signal': 'INT', 'group': 'adm'},
                {'name': 'c', 'run': '/bin/true', 'depends': []}):
        spec = parse(doc).procs[0]
        assert spec.fingerprint == old_fingerprint(spec), doc
        assert 'limits' not in spec.public_record, 'state files unchanged too'


def test_limits_change_the_fingerprint_and_survive_the_state_file():
    base = {'name': 'a', 'run': '/bin/true'}
    without = parse(base).procs[0]
    one = parse(dict(base, limits={'memory_max': '512M', 'nofile': 'unlimited',
                                   'cpu_max': 0.5})).procs[0]
    other = parse(dict(base, limits={'memory_max': '1G', 'nofile': 'unlimited',
                                     'cpu_max': 0.5})).procs[0]
    same = parse(dict(base, limits={'cpu_max': 0.5, 'nofile': 'unlimited',
                                    'memory_max': 512 << 20})).procs[0]
    assert len({without.fingerprint, one.fingerprint, other.fingerprint}) == 3
    assert same.fingerprint == one.fingerprint, 'the same limits written another way'
    assert one.public_record['limits'] == {'memory_max': 512 << 20, 'nofile': 'unlimited',
                                           'cpu_max': 0.5}
    # the next worker rebuilds the same definition from the state file (adoption)
    rebuilt = spec_from_record(jsonfile.loads(jsonfile.dumps(one.public_record)))
    assert rebuilt.limits == one.limits and rebuilt.fingerprint == one.fingerprint


def test_adoption_takes_a_record_only_with_limits_that_pass_todays_rules():
    spec = parse({'name': 'a', 'run': '/bin/true', 'limits': {'pids_max': 10}}).procs[0]
    record = {'name': 'a', 'state': 'running', 'pid': 1234, 'started': [5, 1234],
              'fingerprint': spec.fingerprint, 'cgroup': '/diprocd/x/a.proc',
              'definition': jsonfile.loads(jsonfile.dumps(spec.public_record))}
    checked = adoption._checked(record)
    assert checked is not None and checked['cgroup'] == '/diprocd/x/a.proc'
    for bad in ({'pids_max': 0}, {'memory_max': '12Q'}, {'bogus': 1}, []):
        broken = dict(record, definition=dict(record['definition'], limits=bad))
        assert adoption._checked(broken) is None, bad
    assert adoption._checked(dict(record, cgroup='relative/path'))['cgroup'] is None
    with pytest.raises(Invalid):
        limitspec.limits({'nofile': 'lots'})
