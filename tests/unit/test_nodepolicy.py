"""The node policy as pure code (SPEC 5.1): parsing, loading, and the check that
holds a worker file (or a master's list) to what the node's root allows.

The check is driven with a fake account database (`FakeAccounts`: groups and
symlinks as the test says), so it never depends on this machine's users or
file system; the allowed directories live under a path that does not exist,
so `NodePolicy.confine` (realpath) leaves them as written.
"""
import logging
import os
import pwd
import types

import pytest

from dpd import nodepolicy
from dpd.cluster import clientd
from dpd.config import ConfigError
from dpd.nodepolicy import DEFAULT_PATHS, NodePolicy, OwnFile, PolicyInForce, check_document, \
    check_entries, clashes, load_policy, parse_policy

IS_ROOT = os.geteuid() == 0
root_only = pytest.mark.skipif(not IS_ROOT, reason='chown to another user needs root')

BASE = '/nonexistent-dpd-test'          # never on disk: realpath leaves it alone
ALLOWED = BASE + '/allowed'
OUTSIDE = '/etc/cron.d'


class FakeAccounts:
    """The user database and the file system's links, as a test wants them."""
    groups = {'nobody': ('nogroup',), 'root': ('root',), 'alice': ('alice', 'audio'),
              'www-data': ('www-data',)}
    links = {}                          # path prefix -> where it really leads
    superusers, supergroups = {'root', 'toor'}, {'root', 'wheel0'}     # uid, gid 0

    @classmethod
    def groups_of(cls, user):
        return cls.groups.get(user, ())

    @classmethod
    def is_superuser(cls, user):
        return user in cls.superusers

    @classmethod
    def is_supergroup(cls, group):
        return group in cls.supergroups

    @classmethod
    def resolve(cls, path):
        for link, target in cls.links.items():
            if path == link or path.startswith(link + '/'):
                return target + path[len(link):]
        return path


def linked(links):
    """FakeAccounts whose file system has these symlinks."""
    return type('Linked', (FakeAccounts,), {'links': links})


def policy(**keys):
    keys.setdefault('allowed_paths', [ALLOWED])
    return parse_policy(keys, '/etc/diprocd/policy.json')


def proc(name='x', **keys):
    return dict({'name': name, 'run': '/bin/sleep'}, **keys)


def check(entries, pol=None, default_user='nobody', own_files=(), accounts=FakeAccounts):
    return check_entries(entries, pol or policy(), default_user, own_files, accounts)


def outside(label, key, path):
    return '%s.%s: %s is outside the node policy\'s allowed_paths' % (label, key, path)


# ===================================================================== parse_policy

def test_an_empty_policy_is_the_defaults():
    pol = parse_policy({})
    assert pol.allowed_users is None
    assert pol.allowed_groups == ()
    assert pol.allowed_paths == DEFAULT_PATHS
    assert DEFAULT_PATHS == ('/var/log/diprocd', '/run/diprocd', '/var/lib/diprocd')
    assert pol == NodePolicy()
    assert pol.allows_user('nobody') and pol.allows_user('www-data')
    assert not pol.allows_user('root'), 'the defaults never allow root'


def test_lists_are_kept_as_given_and_paths_normalized():
    pol = parse_policy({'allowed_users': ['nobody', 'www-data'], 'allowed_groups': ['disk'],
                        'allowed_paths': ['/srv/logs/', '/srv//run']}, '/p.json')
    assert pol.allowed_users == ('nobody', 'www-data')
    assert pol.allowed_groups == ('disk',)
    assert pol.allowed_paths == ('/srv/logs', '/srv/run')
    assert pol.path == '/p.json' and not pol.missing


def test_star_allows_any_user_root_included_and_any_group():
    pol = parse_policy({'allowed_users': ['*'], 'allowed_groups': ['*']})
    assert pol.allows_user('root') and pol.allows_user('anyone')
    assert pol.allows_group('disk', ()) and pol.allows_group('root', ())


def test_an_explicit_list_allows_only_its_users():
    pol = parse_policy({'allowed_users': ['nobody']})
    assert pol.allows_user('nobody')
    assert not pol.allows_user('www-data') and not pol.allows_user('root')
    assert parse_policy({'allowed_users': ['root']}).allows_user('root')
    assert not parse_policy({'allowed_users': []}).allows_user('nobody'), 'empty: nobody at all'


def test_allows_group_own_listed_or_star():
    pol = parse_policy({'allowed_groups': ['disk']})
    assert pol.allows_group('audio', ('alice', 'audio')), 'the user\'s own group'
    assert pol.allows_group('disk', ('alice',)), 'listed'
    assert not pol.allows_group('kmem', ('alice',))
    assert not parse_policy({}).allows_group('disk', ('nogroup',))


def test_an_unknown_key_is_an_error_with_a_hint():
    with pytest.raises(ConfigError) as info:
        parse_policy({'alowed_paths': ['/srv']})
    assert info.value.messages == ['unknown key "alowed_paths" (did you mean "allowed_paths"?)']


def test_keys_starting_with_underscore_are_comments():
    pol = parse_policy({'_comment': ['anything', 1], '_allowed_users': 'text',
                        'allowed_users': ['nobody']})
    assert pol.allowed_users == ('nobody',)


@pytest.mark.parametrize('doc, message', [
    ({'allowed_users': 'nobody'}, 'allowed_users: must be a list, not a string'),
    ({'allowed_users': [1]}, 'allowed_users: item 0 must be a string, not a number'),
    ({'allowed_users': ['no body']}, 'allowed_users: item 0 must be a user or group name'),
    ({'allowed_groups': {'disk': True}}, 'allowed_groups: must be a list, not an object'),
    ({'allowed_groups': [None]}, 'allowed_groups: item 0 must be a string, not null'),
    ({'allowed_paths': '/srv'}, 'allowed_paths: must be a list, not a string'),
    ({'allowed_paths': [True]}, 'allowed_paths: item 0 must be a string, not true'),
    ({'allowed_paths': ['var/log']}, 'allowed_paths: item 0 must be an absolute directory '
                                     'without "..", not "var/log"'),
    ({'allowed_paths': ['/var/log/../../etc']}, 'allowed_paths: item 0 must be an absolute '
                                                'directory without "..", not '
                                                '"/var/log/../../etc"'),
    ({'allowed_paths': ['/srv/..']}, 'allowed_paths: item 0 must be an absolute directory'),
    ([], 'must be an object, not a list'),
])
def test_wrong_types_and_values_are_errors(doc, message):
    with pytest.raises(ConfigError) as info:
        parse_policy(doc)
    assert len(info.value.messages) == 1
    assert info.value.messages[0].startswith(message), info.value.messages


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as info:
        parse_policy({'allowed_users': 'x', 'allowed_paths': ['rel'], 'nope': 1})
    assert len(info.value.messages) == 3


# ===================================================================== load_policy

def write(path, text, mode=0o644):
    with open(path, 'w') as f:
        f.write(text)
    os.chmod(path, mode)
    return str(path)


def test_a_missing_file_means_the_defaults_and_says_so(tmp_path):
    path = str(tmp_path / 'policy.json')
    pol = load_policy(path)
    assert pol.missing and pol.path == path
    assert pol.allowed_users is None and pol.allowed_groups == ()
    assert pol.allowed_paths == DEFAULT_PATHS
    assert pol.describe() == 'the defaults (no %s)' % path
    assert NodePolicy().describe() == 'the defaults (no /etc/diprocd/policy.json)'


def test_a_good_file_is_read_and_described_by_its_path(tmp_path):
    path = write(tmp_path / 'policy.json', '{"allowed_users": ["*"], "allowed_paths": ["/srv"],'
                 ' "_comment": "x"}')
    pol = load_policy(path)
    assert not pol.missing
    assert pol.allowed_users == ('*',) and pol.allowed_paths == ('/srv',)
    assert pol.describe() == path


@pytest.mark.parametrize('mode', [0o664, 0o646, 0o666, 0o620])
def test_a_group_or_world_writable_file_is_refused_naming_it(tmp_path, mode):
    path = write(tmp_path / 'policy.json', '{}', mode)
    with pytest.raises(ConfigError) as info:
        load_policy(path)
    assert info.value.messages == [
        '%s: refused: the node policy is group- or world-writable (mode %04o)' % (path, mode)]


def test_a_read_only_or_private_file_is_fine(tmp_path):
    for mode in (0o600, 0o644, 0o400):
        load_policy(write(tmp_path / ('p%o.json' % mode), '{}', mode))


@pytest.mark.parametrize('text, problem', [
    ('{"allowed_users": ["nobody"]', 'JSON'),
    ('{"allowed_users": ["a"], "allowed_users": ["b"]}', 'duplicate'),
    ('', 'empty'),
    ('{"allowed_paths": ["/srv"], "allowed_path": []}', 'unknown key "allowed_path"'),
])
def test_a_file_that_is_not_a_valid_policy_is_an_error_naming_it(tmp_path, text, problem):
    path = write(tmp_path / 'policy.json', text)
    with pytest.raises(ConfigError) as info:
        load_policy(path)
    assert all(m.startswith(path + ': ') for m in info.value.messages), info.value.messages
    assert problem.lower() in ' '.join(info.value.messages).lower(), info.value.messages


def test_a_directory_in_its_place_is_an_error_not_the_defaults(tmp_path):
    path = str(tmp_path / 'policy.json')
    os.mkdir(path)
    with pytest.raises(ConfigError) as info:
        load_policy(path)
    assert info.value.messages[0].startswith(path + ': ')


@root_only
def test_a_file_not_owned_by_root_is_refused(tmp_path):
    path = write(tmp_path / 'policy.json', '{"allowed_users": ["*"]}', 0o644)
    os.chown(path, pwd.getpwnam('nobody').pw_uid, -1)
    with pytest.raises(ConfigError) as info:
        load_policy(path)
    assert info.value.messages == ['%s: refused: the node policy must belong to root (owner '
                                   'uid %d)' % (path, pwd.getpwnam('nobody').pw_uid)]


@root_only
def test_a_root_owned_link_to_a_strangers_file_is_refused(tmp_path):
    target = write(tmp_path / 'theirs.json', '{"allowed_users": ["*"]}', 0o644)
    os.chown(target, pwd.getpwnam('nobody').pw_uid, -1)
    link = str(tmp_path / 'policy.json')
    os.symlink(target, link)
    with pytest.raises(ConfigError, match='must belong to root'):
        load_policy(link)


# ===================================================================== PolicyInForce

class ListLog:
    def __init__(self):
        self.lines = []

    def error(self, fmt, *args):
        self.lines.append(fmt % args)


def test_policy_in_force_keeps_the_old_policy_when_the_new_one_is_bad(tmp_path):
    path = write(tmp_path / 'policy.json', '{"allowed_users": ["nobody"]}')
    held = PolicyInForce(path)
    first = held.load()
    assert held.load() is first, 'load() reads once'
    write(tmp_path / 'policy.json', '{"allowed_users": [}')
    log = ListLog()
    held.reload(log)
    assert held.policy is first
    assert log.lines[0].startswith(path + ': ')
    assert log.lines[-1] == 'the node policy in force stays (%s)' % path
    write(tmp_path / 'policy.json', '{"allowed_users": ["www-data"]}')
    held.reload(logging.getLogger('test'))
    assert held.policy.allowed_users == ('www-data',)


def test_policy_in_force_defaults_to_the_etc_file():
    assert PolicyInForce().path == nodepolicy.DEFAULT_FILE == '/etc/diprocd/policy.json'


# ===================================================================== the check: users

def test_the_default_user_counts_and_nobody_is_allowed_by_default():
    assert check([proc()], parse_policy({'allowed_paths': [ALLOWED]})) == []
    assert check([proc(user='www-data')], parse_policy({})) == []


def test_root_is_refused_by_default_explicitly_or_as_the_default_user():
    defaults = parse_policy({'allowed_paths': [ALLOWED]})
    message = 'procs[0] ("x").user: "root" is not allowed by the node policy\'s allowed_users'
    assert check([proc(user='root')], defaults) == [message]
    assert check([proc()], defaults, default_user='root') == [message]


def test_star_allows_root():
    assert check([proc(user='root')], policy(allowed_users=['*'])) == []


def test_a_list_refuses_users_not_in_it_the_default_user_included():
    pol = policy(allowed_users=['www-data'])
    assert check([proc(user='www-data')], pol) == []
    assert check([proc(user='alice'), proc('y')], pol) == [
        'procs[0] ("x").user: "alice" is not allowed by the node policy\'s allowed_users',
        'procs[1] ("y").user: "nobody" is not allowed by the node policy\'s allowed_users']


def test_root_listed_by_name_is_allowed():
    assert check([proc(user='root')], policy(allowed_users=['root'])) == []


def test_user_null_never_reaches_the_check_the_schema_refuses_it():
    """check_entries takes schema-valid entries: `"user": null` is not one."""
    from dpd.procspec import parse_process_list
    from dpd.schema import Problems
    problems = Problems()
    parse_process_list([proc(user=None, group='disk')], 'procs', problems, 'nobody')
    assert problems.messages == ['procs[0] ("x").user: must be a string, not null']


# ===================================================================== the check: groups

def test_a_group_of_the_users_own_is_allowed():
    assert check([proc(user='alice', group='audio'), proc('y', group='nogroup')]) == []


def test_a_group_not_the_users_own_is_refused_by_default():
    assert check([proc(group='disk')]) == [
        'procs[0] ("x").group: "disk" is not a group of "nobody" and not in the node policy\'s '
        'allowed_groups']
    assert check([proc(user='alice', group='www-data')]) == [
        'procs[0] ("x").group: "www-data" is not a group of "alice" and not in the node '
        'policy\'s allowed_groups']


def test_a_group_listed_in_allowed_groups_or_star_is_allowed():
    assert check([proc(group='disk')], policy(allowed_groups=['disk'])) == []
    assert check([proc(group='kmem')], policy(allowed_groups=['disk'])) != []
    assert check([proc(group='kmem')], policy(allowed_groups=['*'])) == []


def test_group_root_needs_root_allowed_even_with_any_group():
    message = 'procs[0] ("x").group: "root" needs root in the node policy\'s allowed_users'
    assert check([proc(group='root')]) == [message]
    assert check([proc(group='root')], policy(allowed_groups=['*', 'root'])) == [message]
    assert check([proc(user='root', group='root')], policy(allowed_users=['*'])) == []
    # root allowed: "root" is then a group like any other (not nobody's own)
    assert check([proc(group='root')], policy(allowed_users=['root', 'nobody'])) == [
        'procs[0] ("x").group: "root" is not a group of "nobody" and not in the node '
        'policy\'s allowed_groups']
    assert check([proc(group='root')], policy(allowed_users=['root', 'nobody'],
                                              allowed_groups=['root'])) == []


def test_root_user_and_group_both_reported():
    assert len(check([proc(user='root', group='root')])) == 2


# ===================================================================== the check: paths

@pytest.mark.parametrize('key', ['logs', 'pid_file', 'chroot'])
def test_every_process_path_outside_allowed_paths_is_refused(key):
    value = OUTSIDE + '/x'
    assert check([proc(**{key: value})]) == [outside('procs[0] ("x")', key, value)]


def test_the_exact_message_of_the_spec():
    assert check([proc(logs='/etc/cron.d/x')]) == [
        'procs[0] ("x").logs: /etc/cron.d/x is outside the node policy\'s allowed_paths']


def test_chroot_slash_is_not_a_path_to_check():
    assert check([proc(chroot='/')]) == []


def test_paths_inside_allowed_paths_are_accepted():
    entries = [proc(logs=ALLOWED + '/x.log', pid_file=ALLOWED + '/run/x.pid',
                    chroot=ALLOWED + '/jail'),
               proc('y', logs=ALLOWED + '/deep/er/y.log')]
    assert check(entries) == []
    assert check([proc(chroot=ALLOWED)]) == [], 'an allowed directory itself'


def test_a_sibling_with_a_common_prefix_is_outside():
    value = ALLOWED + '-not/x.log'
    assert check([proc(logs=value)]) == [outside('procs[0] ("x")', 'logs', value)]


def test_any_of_several_allowed_paths_will_do():
    pol = policy(allowed_paths=[BASE + '/a', BASE + '/b'])
    assert check([proc(logs=BASE + '/b/x.log', pid_file=BASE + '/a/x.pid')], pol) == []


def test_default_allowed_paths():
    pol = parse_policy({})
    assert check([proc(logs='/var/log/diprocd/x.log', pid_file='/run/diprocd/x.pid')],
                 pol) == []
    assert check([proc(logs='/var/log/x.log')], pol) == [
        outside('procs[0] ("x")', 'logs', '/var/log/x.log')]


def test_a_dotdot_component_is_refused_even_when_it_would_land_inside():
    value = ALLOWED + '/sub/../x.log'
    assert os.path.normpath(value).startswith(ALLOWED + '/')
    assert check([proc(logs=value)]) == [
        'procs[0] ("x").logs: %s has a ".." component (refused by the node policy)' % value]
    escape = ALLOWED + '/../../etc/cron.d/x'
    assert check([proc(pid_file=escape)]) == [
        'procs[0] ("x").pid_file: %s has a ".." component (refused by the node policy)'
        % escape]


def test_dots_in_names_are_not_dotdot():
    assert check([proc(logs=ALLOWED + '/..x/...log', pid_file=ALLOWED + '/./x.pid')]) == []


def test_a_path_that_resolves_outside_is_refused():
    accounts = linked({ALLOWED + '/link': '/etc/cron.d'})
    assert check([proc(logs=ALLOWED + '/link/x')], accounts=accounts) == [
        'procs[0] ("x").logs: %s/link/x leads outside the node policy\'s allowed_paths (to '
        '/etc/cron.d/x, by a symbolic link)' % ALLOWED]


def test_a_last_component_link_leading_outside_is_refused():
    accounts = linked({ALLOWED + '/x.pid': '/etc/shadow'})
    problems = check([proc(pid_file=ALLOWED + '/x.pid')], accounts=accounts)
    assert len(problems) == 1 and 'leads outside' in problems[0] and '/etc/shadow' in problems[0]


def test_a_link_that_stays_inside_is_accepted():
    accounts = linked({ALLOWED + '/current': ALLOWED + '/v2'})
    assert check([proc(logs=ALLOWED + '/current/x.log')], accounts=accounts) == []


def test_the_real_accounts_resolve_with_realpath(tmp_path):
    allowed, elsewhere = tmp_path / 'allowed', tmp_path / 'elsewhere'
    allowed.mkdir()
    elsewhere.mkdir()
    os.symlink(str(elsewhere), str(allowed / 'link'))
    pol = policy(allowed_paths=[str(allowed)])
    problems = check_entries([proc(logs=str(allowed / 'link' / 'x.log'))], pol, 'nobody')
    assert len(problems) == 1 and 'leads outside' in problems[0]
    assert str(elsewhere / 'x.log') in problems[0]
    assert check_entries([proc(logs=str(allowed / 'x.log'))], pol, 'nobody') == []


def test_an_allowed_directory_that_is_itself_a_symlink_is_confined_by_its_target(tmp_path):
    real = tmp_path / 'real'
    real.mkdir()
    alias = tmp_path / 'alias'
    os.symlink(str(real), str(alias))
    pol = policy(allowed_paths=[str(alias)])
    assert pol.confine == (str(real),)
    assert check_entries([proc(logs=str(alias / 'x.log'))], pol, 'nobody') == []
    # as written, paths must be below the allowed directory as the policy names it
    assert check_entries([proc(logs=str(real / 'x.log'))], pol, 'nobody') == [
        outside('procs[0] ("x")', 'logs', str(real / 'x.log'))]


def test_confine_is_sorted_unique_and_resolved(tmp_path):
    real = tmp_path / 'real'
    real.mkdir()
    os.symlink(str(real), str(tmp_path / 'alias'))
    pol = policy(allowed_paths=[str(tmp_path / 'alias'), str(real), BASE + '/b', BASE + '/a'])
    assert pol.confine == tuple(sorted({str(real), BASE + '/a', BASE + '/b'}))


# ===================================================================== the check: taken files

def test_a_file_the_daemons_use_is_refused():
    own = (ALLOWED + '/worker.json', ALLOWED + '/worker.state.json', ALLOWED + '/worker.fifos')
    problems = check([proc(logs=ALLOWED + '/worker.state.json'),
                      proc('y', pid_file=ALLOWED + '/worker.json'),
                      proc('z', logs=ALLOWED + '/worker.fifos/z.fifo')], own_files=own)
    assert problems == [
        'procs[0] ("x").logs: %s/worker.state.json is a file the daemons use themselves'
        % ALLOWED,
        'procs[1] ("y").pid_file: %s/worker.json is a file the daemons use themselves'
        % ALLOWED,
        'procs[2] ("z").logs: %s/worker.fifos/z.fifo is a file the daemons use themselves'
        % ALLOWED]


def test_an_account_of_uid_or_gid_0_under_another_name_is_root():
    problems = check([proc(user='toor'), proc('y', group='wheel0')],
                     pol=policy(allowed_users=['toor', 'nobody'], allowed_groups=['wheel0']))
    assert problems == [
        'procs[0] ("x").user: "toor" has uid 0: it is root, which needs root in the node '
        'policy\'s allowed_users',
        'procs[1] ("y").group: "wheel0" has gid 0: it needs root in the node policy\'s '
        'allowed_users']
    allowed = policy(allowed_users=['toor', 'root', 'nobody'], allowed_groups=['wheel0'])
    assert check([proc(user='toor'), proc('y', group='wheel0')], pol=allowed) == []


def test_the_client_keeps_every_file_of_the_worker_and_its_own_from_processes():
    """What the client holds a master's list to: the worker's files by its file's
    path (its journal and control socket too), and the client's own."""
    config = types.SimpleNamespace(
        conf_file=ALLOWED + '/worker.json', path=ALLOWED + '/client.json',
        log_file=ALLOWED + '/client.log', state_file=ALLOWED + '/client.state.json',
        pid_file=None)
    taken = clientd._files_taken(config)
    for name in ('worker.json', 'worker.json.lock', 'worker.state.json', 'worker.state.fifos',
                 'worker.state.journal', 'worker.sock', 'client.json', 'client.log',
                 'client.state.json', 'client.sock'):
        assert ALLOWED + '/' + name in taken, name
    problems = check([proc(logs=ALLOWED + '/worker.state.journal'),
                      proc('y', pid_file=ALLOWED + '/worker.sock')], own_files=taken)
    assert problems == [
        'procs[0] ("x").logs: %s/worker.state.journal is a file the daemons use themselves'
        % ALLOWED,
        'procs[1] ("y").pid_file: %s/worker.sock is a file the daemons use themselves'
        % ALLOWED]


def test_logs_that_is_another_processs_pid_file_is_refused():
    shared = ALLOWED + '/a.pid'
    problems = check([proc('a', pid_file=shared), proc('b', logs=shared)])
    assert problems == ['procs[1] ("b").logs: %s is the pid_file of procs[0]' % shared]
    written_otherwise = ALLOWED + '//a.pid'
    assert check([proc('a', pid_file=shared), proc('b', logs=written_otherwise)]) == [
        'procs[1] ("b").logs: %s is the pid_file of procs[0]' % written_otherwise]


def test_logs_and_pid_file_of_the_same_process_are_caught_too():
    shared = ALLOWED + '/a.pid'
    assert check([proc('a', pid_file=shared, logs=shared)]) == [
        'procs[0] ("a").logs: %s is the pid_file of procs[0]' % shared]


SELF_LINK = linked({ALLOWED + '/d': ALLOWED})     # a directory link that stays inside


def test_a_daemons_own_file_reached_through_a_link_is_refused():
    own = (ALLOWED + '/dpd-workerd.pid',)
    for key in ('logs', 'pid_file'):
        value = ALLOWED + '/d/dpd-workerd.pid'
        assert check([proc(**{key: value})], own_files=own, accounts=SELF_LINK) == [
            'procs[0] ("x").%s: %s is a file the daemons use themselves' % (key, value)]


def test_logs_that_is_another_processs_pid_file_through_a_link_is_refused():
    problems = check([proc('a', pid_file=ALLOWED + '/a.pid'),
                      proc('b', logs=ALLOWED + '/d/a.pid')], accounts=SELF_LINK)
    assert problems == ['procs[1] ("b").logs: %s/d/a.pid is the pid_file of procs[0]' % ALLOWED]


# ===================================================================== clashes: a daemon's own keys

LOCK = OwnFile('', 'the worker\'s lock', ALLOWED + '/w.json.lock')
FIFOS = OwnFile('state_file', 'the worker\'s FIFO directory', ALLOWED + '/w.fifos',
                directory=True, derived=True)


def test_a_daemons_key_on_another_of_its_files_is_refused_as_written_and_through_a_link():
    for value in (ALLOWED + '/w.json.lock', ALLOWED + '//w.json.lock', ALLOWED + '/d/w.json.lock'):
        metrics = OwnFile('metrics_file', 'the worker\'s metrics_file', value)
        assert clashes((LOCK, metrics), SELF_LINK) == [
            'metrics_file: %s is the worker\'s lock' % value]
    elsewhere = OwnFile('metrics_file', 'the worker\'s metrics_file', ALLOWED + '/d.prom')
    assert clashes((LOCK, FIFOS, elsewhere), SELF_LINK) == []


def test_a_key_inside_a_daemons_directory_is_refused_wherever_it_comes():
    log = OwnFile('log_file', 'the worker\'s log_file', ALLOWED + '/d/w.fifos/x.log')
    message = 'log_file: %s/d/w.fifos/x.log is inside the worker\'s FIFO directory' % ALLOWED
    assert clashes((log, FIFOS), SELF_LINK) == [message]
    assert clashes((FIFOS, log), SELF_LINK) == [message]


def test_a_derived_file_that_clashes_is_said_at_its_key():
    config = OwnFile('', 'the worker file itself', ALLOWED + '/w.fifos/w.json')
    assert clashes((config, FIFOS), SELF_LINK) == [
        'state_file: the worker\'s FIFO directory would be %s/w.fifos, holding the worker '
        'file itself' % ALLOWED]


def test_path_prefix_for_labels():
    assert check_entries([proc(logs='/etc/x')], policy(), 'nobody', (), FakeAccounts,
                         path='nodes.n1') == [outside('nodes.n1[0] ("x")', 'logs', '/etc/x')]


def test_an_entry_without_a_name_is_labelled_by_its_index():
    assert check([{'run': '/bin/sleep', 'logs': '/etc/x'}]) == [
        outside('procs[0]', 'logs', '/etc/x')]


# ===================================================================== check_document

@pytest.mark.parametrize('key', ['pid_file', 'log_file', 'state_file', 'metrics_file'])
def test_every_top_level_path_outside_is_refused(key):
    doc = {'procs': [], key: '/etc/cron.d/x'}
    assert check_document(doc, policy(), 'nobody', (), FakeAccounts) == [
        '%s: /etc/cron.d/x is outside the node policy\'s allowed_paths' % key]


def test_top_level_paths_inside_are_accepted_and_checked_after_the_processes():
    doc = {'procs': [proc(logs='/etc/x')], 'pid_file': ALLOWED + '/w.pid',
           'log_file': ALLOWED + '/../w.log', 'state_file': ALLOWED + '/w.state.json'}
    assert check_document(doc, policy(), 'nobody', (), FakeAccounts) == [
        outside('procs[0] ("x")', 'logs', '/etc/x'),
        'log_file: %s/../w.log has a ".." component (refused by the node policy)' % ALLOWED]


def test_a_document_without_procs_or_with_null_keys():
    assert check_document({'procs': [], 'pid_file': None}, policy(), 'nobody', (),
                          FakeAccounts) == []


def test_a_good_document_has_no_problem():
    doc = {'procs': [proc(user='www-data', logs=ALLOWED + '/x.log', pid_file=ALLOWED + '/x.pid'),
                     proc('y', chroot=ALLOWED + '/jail')],
           'log_file': ALLOWED + '/worker.log', '_diprocd': {'gen': 1}}
    assert check_document(doc, policy(), 'nobody', (), FakeAccounts) == []


def test_every_problem_of_a_document_at_once():
    doc = {'procs': [proc(user='root', group='disk', logs='/etc/cron.d/x',
                          pid_file='/etc/passwd', chroot='/etc')],
           'pid_file': '/etc/w.pid'}
    assert len(check_document(doc, policy(), 'nobody', (), FakeAccounts)) == 6


# ===================================================================== the worker's loader

def write_worker(tmp_path, doc, owner=None):
    import json
    path = str(tmp_path / 'worker.json')
    with open(path, 'w') as f:
        json.dump(doc, f)
    os.chmod(path, 0o600)
    if owner is not None:
        os.chown(path, owner, -1)
    return path


@root_only
def test_load_worker_trusts_a_root_owned_file_without_a_record(tmp_path):
    from dpd.worker.config import load_worker
    tmp_path.chmod(0o755)
    path = write_worker(tmp_path, {'procs': [proc(user='root', logs='/etc/cron.d/x')]})
    config = load_worker(path, 'nobody', root=True, policy=policy())
    assert config.confine is None
    assert config.procs[0].user == 'root'


@root_only
@pytest.mark.parametrize('managed, owner', [(True, 0), (False, 65534), (True, 65534)])
def test_load_worker_holds_a_managed_or_strangers_file_to_the_policy(tmp_path, managed, owner):
    from dpd.worker.config import load_worker
    tmp_path.chmod(0o755)
    doc = {'procs': [proc(logs='/etc/cron.d/x')]}
    if managed:
        doc['_diprocd'] = {'gen': 1, 'sha256': 'x'}
    path = write_worker(tmp_path, doc, owner)
    with pytest.raises(ConfigError) as info:
        load_worker(path, 'nobody', root=True, policy=policy())
    assert info.value.messages[0] == '%s: %s' % (
        path, outside('procs[0] ("x")', 'logs', '/etc/cron.d/x'))
    assert info.value.messages[-1].startswith('%s: refused by the node policy (/etc/diprocd/'
                                              'policy.json)' % path)
    good = dict(doc, procs=[proc(logs=ALLOWED + '/x.log')])
    path = write_worker(tmp_path, good, owner)
    assert load_worker(path, 'nobody', root=True, policy=policy()).confine == (ALLOWED,)


def test_load_worker_as_a_non_root_worker_never_applies_the_policy(tmp_path):
    from dpd.worker.config import load_worker
    path = write_worker(tmp_path, {'procs': [proc(logs='/etc/cron.d/x')],
                                   '_diprocd': {'gen': 1}})
    config = load_worker(path, 'nobody', root=False, policy=policy())
    assert config.confine is None
