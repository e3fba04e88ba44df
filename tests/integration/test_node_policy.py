"""The node policy with real daemons (SPEC 5.1): what a master, or the user who
owns a worker file, can no longer make a root worker do.

Each attack aims at "precious" files: root-owned files in this test's own
directory, outside the policy's allowed_paths (`precious/`), plus a directory
where nothing may appear (`outside/`, with an empty `cron.d`). `Site.damage()`
says what changed there, and which attacking process (every one is named
`evil...`) runs; each test waits for the daemon's refusal OR for damage, then
asserts there is no damage, so on code without the policy (commit 0ea8406,
without `--policy`) a test fails by showing the attack at work, not by a
timeout. The policy used (`Site.policy`) keeps the default users and groups
and allows only `allowed/`.
"""
import grp
import json
import os
import pwd
import signal
import stat
import subprocess

import pytest

from cluster_support import Cluster
from support import (IS_ROOT, PYTHON, Daemon, command, pid_alive, pids_with, read_json,
                     read_pid, run, wait_until, write_json)

pytestmark = pytest.mark.skipif(not IS_ROOT, reason='a root worker acting for someone else: '
                                'needs root')

EX_CONFIG = 78
WAIT = 10.0
NOBODY = pwd.getpwnam('nobody').pw_uid if IS_ROOT else None
DISK = grp.getgrnam('disk').gr_gid if IS_ROOT else None
RECORD = {'gen': 1, 'sha256': '0' * 64, 'epoch': 'test'}   # what makes a file "managed"
REJECTED = 'configuration rejected'
PRECIOUS = {'cron': b'* * * * * root /usr/local/sbin/backup\n', 'app.pid': b'4242\n',
            'shadow': b'root:$6$secret:19000:0:99999:7:::\n'}


def policy_args(path):
    """The worker's and the client's option (one place, to try these tests on a tree
    that does not have it)."""
    return ['--policy', path]


def mkdir(path, mode=0o755):
    os.mkdir(path)
    os.chmod(path, mode)
    return path


def put_bytes(path, data, mode=0o644, owner=0):
    """Replace `path` atomically with `data`, owned by `owner`."""
    tmp = path + '.tmp'
    with open(tmp, 'wb') as f:
        f.write(data)
    os.chmod(tmp, mode)
    os.chown(tmp, owner, -1)
    os.rename(tmp, path)


def uid_gid(pid):
    """(real uid, real gid) of a live process, from /proc/PID/status (as it is now: a
    process the worker just started may still be setpriv, root until it switches)."""
    fields = {}
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            key, _, value = line.partition(':')
            fields[key] = value.split()
    return int(fields['Uid'][0]), int(fields['Gid'][0])


def ids_of(pid):
    """(real uid, real gid) of a started process, once it runs its own program: the
    worker starts a process through setpriv, in the same pid, which is root until it
    has switched to the process's user and exec'd the program."""
    def program():
        with open('/proc/%d/cmdline' % pid, 'rb') as f:
            argv0 = f.read().split(b'\0')[0]
        return not argv0.endswith(b'/setpriv')
    wait_until(program, WAIT, message='pid %d still in setpriv' % pid)
    return uid_gid(pid)


class Site:
    """One node's disk for a test: allowed/, precious/, outside/, a policy and a
    worker file (etc/worker.json, in a directory only root can write)."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.allowed = mkdir(workdir.join('allowed'))
        self.precious_dir = mkdir(workdir.join('precious'))
        self.outside = mkdir(workdir.join('outside'))
        mkdir(os.path.join(self.outside, 'cron.d'))
        self.precious = {}
        for name, data in PRECIOUS.items():
            self.precious[name] = os.path.join(self.precious_dir, name)
            put_bytes(self.precious[name], data)
        self.etc = mkdir(workdir.join('etc'))
        self.config = os.path.join(self.etc, 'worker.json')
        self.state_file = os.path.join(self.etc, 'worker.state.json')
        self.policy = self.write_policy('policy.json', {'allowed_paths': [self.allowed]})
        self.daemons = []
        self.before = None

    def write_policy(self, name, doc, mode=0o644, owner=0):
        path = self.workdir.join(name)
        put_bytes(path, json.dumps(doc).encode(), mode, owner)
        return path

    # ------------------------------------------------------------ what must not happen

    def snapshot(self):
        seen = {}
        for top in (self.precious_dir, self.outside):
            for directory, dirs, files in os.walk(top):
                for name in dirs:
                    seen[os.path.join(directory, name)] = 'a directory'
                for name in files:
                    path = os.path.join(directory, name)
                    info = os.lstat(path)
                    with open(path, 'rb') as f:
                        seen[path] = (f.read(), info.st_uid, stat.S_IMODE(info.st_mode))
        return seen

    def seal(self):
        """The state that must stay: taken once the scene is set."""
        self.before = self.snapshot()

    def damage(self):
        """What the attacks did: changed, created or removed files, evil processes."""
        if self.before is None:
            self.seal()
        now = self.snapshot()
        found = ['%s: %s' % (path, 'created' if path not in self.before else
                             'removed' if path not in now else 'changed: %r' % (now[path],))
                 for path in sorted(set(self.before) | set(now))
                 if self.before.get(path) != now.get(path)]
        for pid in pids_with('%s-evil' % self.workdir.marker):
            try:
                found.append('an evil process runs: pid %d, uid/gid %s' % (pid, uid_gid(pid)))
            except OSError:
                pass
        return found

    def assert_intact(self):
        damage = self.damage()
        assert not damage, 'the attack succeeded:\n' + '\n'.join(damage)
        for name, data in PRECIOUS.items():
            with open(self.precious[name], 'rb') as f:
                assert f.read() == data

    def settle(self, done, what, timeout=WAIT):
        """Wait until `done()` (the refusal) or damage; then there must be no damage.
        Damage is reported as first seen (a process being exec'd may hide for an
        instant from the next look at /proc)."""
        outcome = wait_until(lambda: self.damage() or done(), timeout,
                             message=lambda: '%s; logs:\n%s' % (what, self.logs()))
        assert not isinstance(outcome, list), 'the attack succeeded:\n' + '\n'.join(outcome)
        self.assert_intact()

    # ------------------------------------------------------------ the worker

    def proc(self, name, mode='sleep', *args, **keys):
        keys.setdefault('user', 'nobody')
        keys.setdefault('stop_timeout', 2)
        return self.workdir.actor(name, mode, *args, **keys)

    def put(self, procs, managed=True, owner=0, mode=0o600, **top):
        doc = dict({'procs': procs}, **top)
        if managed:
            doc['_diprocd'] = RECORD
        put_bytes(self.config, json.dumps(doc, indent=1).encode(), mode, owner)

    def start_worker(self, policy=None, **keys):
        daemon = Daemon('dpd-workerd', self.config, policy_args(policy or self.policy),
                        **keys)
        self.daemons.append(daemon)
        return daemon.start()

    def procs_state(self):
        try:
            return {p['name']: p for p in read_json(self.state_file)['procs']}
        except (OSError, ValueError, KeyError):
            return {}

    def config_record(self):
        try:
            return read_json(self.state_file)['config']
        except (OSError, ValueError, KeyError):
            return {}

    def running(self, name):
        record = self.procs_state().get(name) or {}
        return record.get('state') == 'running' and record.get('pid')

    def wait_running(self, *names):
        return [wait_until(lambda: self.running(name), WAIT,
                           message=lambda: '%s running; logs:\n%s' % (name, self.logs()))
                for name in names]

    def logs(self):
        return '\n'.join('--- %s\n%s' % (d.program, d.log()[-4000:]) for d in self.daemons)

    def stop(self):
        for daemon in reversed(self.daemons):
            daemon.stop()


@pytest.fixture
def site(workdir):
    made = Site(workdir)
    try:
        yield made
    finally:
        made.stop()


def rejected(worker, count=1):
    return lambda: worker.log().count(REJECTED) >= count


# ===================================================================== 1. a file root does not own

def test_a_file_owned_by_nobody_cannot_run_a_process_as_root(site):
    a = site.proc('a')
    site.put([a], managed=False)
    worker = site.start_worker()
    pid_a, = site.wait_running('a')
    site.seal()
    site.put([a, site.proc('evil', user='root')], managed=False, owner=NOBODY)
    site.settle(rejected(worker), 'the nobody-owned file rejected')
    log = worker.log()
    assert '%s: procs[1] ("evil").user: "root" is not allowed by the node policy\'s ' \
           'allowed_users' % site.config in log
    assert 'refused by the node policy (%s)' % site.policy in log
    assert pid_alive(worker.pid) and site.running('a') == pid_a, 'the running process stays'
    marked = pids_with(site.workdir.marker)
    assert marked == [pid_a]
    assert all(ids_of(pid)[0] != 0 for pid in marked)
    # the same file at start: -t and -f both refuse it with 78
    status, _, err = run('dpd-workerd', '-t', *policy_args(site.policy), site.config)
    assert status == EX_CONFIG and '"root" is not allowed by the node policy' in err
    status, _, err = run('dpd-workerd', '-f', *policy_args(site.policy), site.config)
    assert status == EX_CONFIG and site.config in err and 'allowed_users' in err
    # a nobody-owned file within the policy is applied
    site.put([a, site.proc('b', logs=os.path.join(site.allowed, 'b.log'))], managed=False,
             owner=NOBODY)
    pid_b, = site.wait_running('b')
    assert ids_of(pid_b)[0] == NOBODY and site.running('a') == pid_a
    site.assert_intact()


def test_a_file_owned_by_nobody_cannot_name_a_root_owned_log(site):
    """The seed's set-up: the client runs as the file's owner; whoever has that account
    must not get root's writes."""
    site.put([], managed=False)
    worker = site.start_worker()
    site.seal()
    site.put([site.proc('evil', 'echo', 'owned', logs=site.precious['cron'])],
             managed=False, owner=NOBODY)
    site.settle(rejected(worker), 'the nobody-owned file rejected')
    assert 'procs[0] ("evil").logs: %s is outside the node policy\'s allowed_paths' \
        % site.precious['cron'] in worker.log()


# ===================================================================== 2, 3. a managed file

def outside_message(key, path):
    return '%s: %s is outside the node policy\'s allowed_paths' % (key, path)


# name -> (the evil entry, the file's top-level keys, the problem logged), for a Site
ATTACKS = {
    'logs-into-a-root-file': lambda s: (
        s.proc('evil', 'echo', 'owned', logs=s.precious['cron']), {},
        outside_message('logs', s.precious['cron'])),
    'logs-creating-a-new-file': lambda s: (
        s.proc('evil', 'echo', 'owned', logs=os.path.join(s.outside, 'cron.d', 'x')), {},
        outside_message('logs', os.path.join(s.outside, 'cron.d', 'x'))),
    'pid-file-over-a-root-file': lambda s: (
        s.proc('evil', pid_file=s.precious['app.pid']), {},
        outside_message('pid_file', s.precious['app.pid'])),
    'pid-file-creating-a-new-file': lambda s: (
        s.proc('evil', pid_file=os.path.join(s.outside, 'cron.d', 'y')), {},
        outside_message('pid_file', os.path.join(s.outside, 'cron.d', 'y'))),
    'dotdot-out-of-allowed': lambda s: (
        s.proc('evil', 'echo', 'owned', logs=os.path.join(s.allowed, '..', 'precious', 'cron')),
        {}, 'has a ".." component (refused by the node policy)'),
    'user-root': lambda s: (
        s.proc('evil', user='root'), {},
        'user: "root" is not allowed by the node policy\'s allowed_users'),
    'default-user-root-by-group': lambda s: (
        s.proc('evil', group='root'), {},
        'group: "root" needs root in the node policy\'s allowed_users'),
    'group-disk': lambda s: (
        s.proc('evil', group='disk'), {},
        'group: "disk" is not a group of "nobody" and not in the node policy\'s allowed_groups'),
    'chroot-outside': lambda s: (
        s.proc('evil', chroot='/proc/self/root'), {},     # that is, "/" for whoever opens it
        outside_message('chroot', '/proc/self/root')),
    'worker-log-file': lambda s: (
        s.proc('evil', 'echo', 'owned'), {'log_file': s.precious['shadow']},
        outside_message('log_file', s.precious['shadow'])),
    'worker-pid-file': lambda s: (
        s.proc('evil', 'echo', 'owned'), {'pid_file': s.precious['app.pid']},
        outside_message('pid_file', s.precious['app.pid'])),
}


@pytest.mark.parametrize('attack', sorted(ATTACKS))
def test_a_managed_file_that_breaks_the_policy_is_rejected_whole(site, attack):
    a = site.proc('a')
    site.put([a])
    worker = site.start_worker()
    pid_a, = site.wait_running('a')
    site.seal()
    evil, top, problem = ATTACKS[attack](site)
    site.put([a, evil], **top)
    site.settle(rejected(worker), 'the managed file rejected')
    assert site.config + ': ' in worker.log() and problem in worker.log()
    assert 'refused by the node policy (%s)' % site.policy in worker.log()
    assert site.running('a') == pid_a and not pids_with(site.workdir.marker + '-evil')
    wait_until(lambda: problem in ' '.join(site.config_record().get('errors', ())), WAIT,
               message='the state file shows the rejection')
    assert not site.config_record()['ok']
    worker.stop()
    site.assert_intact()


def test_a_root_owned_pid_file_outside_survives_the_worker(site):
    site.put([])
    worker = site.start_worker()
    site.seal()
    site.put([site.proc('evil', pid_file=site.precious['app.pid'])])
    site.settle(rejected(worker), 'the managed file rejected')
    assert worker.stop() == 0
    site.assert_intact()
    assert os.path.exists(site.precious['app.pid'])


# ===================================================================== 4, 5. through a cluster

class Node:
    """A master (Cluster) and node n1's client and worker, both on the strict policy."""

    def __init__(self, site, allowed_users, client_dir=None):
        self.site = site
        self.cluster = Cluster(site.workdir)
        self.client_config = os.path.join(client_dir or site.workdir.path, 'client.json')
        doc = {'master_stats': self.cluster.stats, 'master_updates': self.cluster.updates,
               'node_name': 'n1', 'conf_file': site.config}
        if allowed_users is not None:
            doc['allowed_users'] = allowed_users
        write_json(self.client_config, doc)
        site.put([], managed=False)
        self.worker = self.client = None

    def start(self, entries):
        self.cluster.write_master({'n1': entries})
        self.site.daemons.append(self.cluster.start_master())
        self.worker = self.site.start_worker()
        self.client = Daemon('dpd-clientd', self.client_config, policy_args(self.site.policy))
        self.site.daemons.append(self.client.start())

    def procs(self):
        return [p['name'] for p in read_json(self.site.config)['procs']]

    def refused(self, text):
        return lambda: text in self.client.log()


@pytest.fixture
def node(site):
    return Node(site, allowed_users=['root', 'nobody'])


def test_the_client_refuses_a_masters_list_that_breaks_the_policy(site, node):
    """The client's own allowed_users accepts root and nobody here: the node policy
    (default users, only allowed/) is what refuses."""
    good = site.proc('good', logs=os.path.join(site.allowed, 'good.log'))
    node.start([good])
    pid_good, = site.wait_running('good')
    node.cluster.wait_node_state('n1', 'in-sync')
    site.seal()
    cron_new = os.path.join(site.outside, 'cron.d', 'x')
    node.cluster.write_master({'n1': [
        good,
        site.proc('evil-root', user='root'),
        site.proc('evil-logs', 'echo', 'owned', logs=site.precious['cron']),
        site.proc('evil-pid', pid_file=site.precious['app.pid']),
        site.proc('evil-new', 'echo', 'owned', logs=cron_new)]})
    site.settle(node.refused('the worker file is left as it is'), 'the client refuses')
    log = node.client.log()
    for problem in ['procs[1] ("evil-root").user: "root" is not allowed by the node policy\'s '
                    'allowed_users',
                    'procs[2] ("evil-logs").logs: %s is outside the node policy\'s '
                    'allowed_paths' % site.precious['cron'],
                    'procs[3] ("evil-pid").pid_file: %s is outside the node policy\'s '
                    'allowed_paths' % site.precious['app.pid'],
                    'procs[4] ("evil-new").logs: %s is outside the node policy\'s '
                    'allowed_paths' % cron_new]:
        assert problem in log, log
    assert node.procs() == ['good'], 'the worker file keeps its previous list'
    assert read_json(site.config)['_diprocd']['gen'] != 0
    node.cluster.wait_node_state('n1', 'rejected')
    status, out, _ = run('dpd-ctl', 'cluster', node.cluster.master_config)
    assert status == 150 and 'REJECTED' in out and 'refused' in out, out
    assert 'node policy' in out, out
    assert site.running('good') == pid_good
    site.assert_intact()


def test_a_group_beyond_the_users_own_needs_allowed_groups(site):
    """No allowed_users in the client file (any user but root): only the node policy
    stands between the master and a process in group disk."""
    node = Node(site, allowed_users=None)
    node.start([site.proc('g', group='disk')])
    site.seal()

    def g_runs():
        return pids_with(site.workdir.marker + '-g')
    outcome = wait_until(lambda: g_runs() or node.refused('the worker file is left as it is')(),
                         WAIT, message=site.logs)
    assert outcome is True and not g_runs(), 'g must not run before it is allowed'
    assert 'procs[0] ("g").group: "disk" is not a group of "nobody" and not in the node ' \
        'policy\'s allowed_groups' in node.client.log()
    node.cluster.wait_node_state('n1', 'rejected')
    assert node.procs() == []
    # the node's root allows it: HUP reads the policy again, on both daemons
    site.write_policy('policy.json', {'allowed_paths': [site.allowed], 'allowed_groups': ['disk']})
    for daemon in (node.worker, node.client):
        daemon.signal(signal.SIGHUP)
    pid, = site.wait_running('g')
    assert ids_of(pid) == (NOBODY, DISK)
    node.cluster.wait_node_state('n1', 'in-sync')
    site.assert_intact()


# ===================================================================== 6. what keeps working

def test_a_root_owned_file_without_a_record_is_trusted_as_before(site):
    trusted_log = os.path.join(site.outside, 'trusted.log')
    site.put([site.proc('r', 'echo', 'trusted', user='root', logs=trusted_log)], managed=False)
    site.start_worker()
    pid, = site.wait_running('r')
    assert ids_of(pid)[0] == 0
    wait_until(lambda: os.path.exists(trusted_log) and open(trusted_log).read() == 'trusted\n',
               WAIT, message=site.logs)


def test_paths_inside_allowed_paths_work_for_a_managed_file(site):
    log, pid_file = (os.path.join(site.allowed, 'run', 'ok.' + ext) for ext in ('log', 'pid'))
    mkdir(os.path.dirname(log))
    site.put([site.proc('ok', 'echo', 'fine', logs=log, pid_file=pid_file)],
             log_file=os.path.join(site.allowed, 'worker.log'))
    site.seal()
    site.start_worker()
    pid, = site.wait_running('ok')
    assert ids_of(pid)[0] == NOBODY
    wait_until(lambda: read_pid(pid_file) == pid, WAIT, message=site.logs)
    wait_until(lambda: os.path.exists(log) and open(log).read() == 'fine\n', WAIT,
               message=site.logs)
    assert os.path.getsize(os.path.join(site.allowed, 'worker.log')) > 0
    site.assert_intact()


def test_star_in_allowed_users_allows_root_in_a_managed_file(site):
    star = site.write_policy('star.json', {'allowed_users': ['*'],
                                           'allowed_paths': [site.allowed]})
    site.put([site.proc('r', user='root')])
    site.start_worker(policy=star)
    pid, = site.wait_running('r')
    assert ids_of(pid)[0] == 0


def test_without_the_policy_file_the_defaults_apply(site):
    missing = site.workdir.join('no-such-policy.json')
    site.put([site.proc('ok', logs='/var/log/diprocd-test-never/x.log')])
    site.seal()
    status, _, err = run('dpd-workerd', '-t', *policy_args(missing), site.config)
    assert status == EX_CONFIG
    assert 'is outside the node policy\'s allowed_paths' in err
    assert 'the defaults (no %s)' % missing in err
    site.put([site.proc('ok')])
    status, out, err = run('dpd-workerd', '-t', *policy_args(missing), site.config)
    assert status == 0, err


# ===================================================================== 7. symbolic links

def test_a_path_through_a_link_that_leads_outside_is_refused_at_load(site):
    os.symlink(os.path.join(site.outside, 'cron.d'), os.path.join(site.allowed, 'link'))
    site.put([])
    worker = site.start_worker()
    site.seal()
    evil_log = os.path.join(site.allowed, 'link', 'x')
    site.put([site.proc('evil', 'echo', 'owned', logs=evil_log)])
    site.settle(rejected(worker), 'the managed file rejected')
    assert 'procs[0] ("evil").logs: %s leads outside the node policy\'s allowed_paths (to %s' \
        % (evil_log, os.path.join(site.outside, 'cron.d', 'x')) in worker.log()


def test_a_link_planted_while_it_runs_is_refused_at_reopen_and_restart(site):
    sub = mkdir(os.path.join(site.allowed, 'sub'))
    target = mkdir(os.path.join(site.outside, 'linked'))
    log, pid_file = os.path.join(sub, 'x.log'), os.path.join(sub, 'x.pid')
    site.put([site.proc('x', 'chatty', 0, 0.02, logs=log, pid_file=pid_file)])
    worker = site.start_worker()
    pid, = site.wait_running('x')
    wait_until(lambda: os.path.exists(log) and os.path.getsize(log) > 0, WAIT,
               message=site.logs)
    site.seal()
    os.rename(sub, sub + '.old')
    os.symlink(target, sub)
    # the pump notices the moved log within a second and reopens it: refused
    refusal = 'it leads to %s, outside the node policy\'s allowed_paths' % target
    site.settle(lambda: refusal in worker.log(), 'the reopen refused')
    assert 'x: cannot open %s' % log in worker.log()
    os.kill(pid, signal.SIGKILL)
    # the restart needs the pid file: refused, the process is failed
    site.settle(lambda: 'x: cannot start: %s: refused: %s' % (pid_file, refusal) in worker.log(),
                'the restart refused')
    wait_until(lambda: site.procs_state().get('x', {}).get('state') == 'failed', WAIT)
    assert 'node policy' in site.procs_state()['x']['error']
    assert os.listdir(target) == []
    worker.stop()
    site.assert_intact()


def test_a_metrics_file_below_a_link_planted_while_it_runs_is_refused(site):
    """metrics_file (SPEC 6.4) is replaced through the same confined walk: a
    directory swapped for a link that leads outside gets nothing."""
    sub = mkdir(os.path.join(site.allowed, 'textfile'))
    target = mkdir(os.path.join(site.outside, 'textfile'))
    metrics_file = os.path.join(sub, 'diprocd.prom')
    site.put([site.proc('x')], metrics_file=metrics_file)
    worker = site.start_worker()
    pid, = site.wait_running('x')
    wait_until(lambda: os.path.exists(metrics_file), WAIT, message=site.logs)
    site.seal()
    os.rename(sub, sub + '.old')
    os.symlink(target, sub)
    os.kill(pid, signal.SIGKILL)              # a change: both files are written again
    refusal = 'cannot write the metrics file %s: %s: refused: it leads to %s, outside ' \
        'the node policy\'s allowed_paths' % (metrics_file, metrics_file, target)
    site.settle(lambda: refusal in worker.log(), 'the metrics file refused')
    assert os.listdir(target) == []
    worker.stop()
    site.assert_intact()


def test_a_chroot_swapped_for_a_link_is_refused_by_the_launcher(site):
    """The chroot is checked at load; a link planted before the next start is caught by
    the launcher, which chroots only into a directory below allowed_paths."""
    jail = mkdir(os.path.join(site.allowed, 'jail'))
    dumps = mkdir(os.path.join(site.outside, 'dumps'), 0o777)
    log = os.path.join(site.allowed, 'j.log')
    site.put([site.proc('evil-j', 'dump', os.path.join(dumps, 'j.json'), chroot=jail, logs=log)])
    worker = site.start_worker()
    # the empty jail has no python: it fails, and is tried again in a second
    wait_until(lambda: 'evil-j: cannot start: cannot run %s' % (jail + PYTHON) in worker.log(),
               WAIT, message=site.logs)
    site.seal()
    os.rmdir(jail)
    os.symlink('/', jail)
    site.settle(lambda: os.path.exists(log) and 'outside the node policy\'s allowed_paths'
                in open(log).read(), 'the launcher refuses the chroot')
    assert 'cannot start %s in chroot %s' % (PYTHON, jail) in open(log).read()
    worker.stop()
    site.assert_intact()


# ===================================================================== 8. bad policy files

BAD_POLICIES = {
    'group-writable': ({'allowed_paths': ['/srv']}, 0o664, 0, 'group- or world-writable'),
    'world-writable': ({'allowed_paths': ['/srv']}, 0o646, 0, 'group- or world-writable'),
    'not-json': ('{"allowed_paths": [', 0o644, 0, 'JSON'),
    'unknown-key': ({'allowed_path': ['/srv']}, 0o644, 0,
                    'unknown key "allowed_path" (did you mean "allowed_paths"?)'),
    'not-owned-by-root': ({'allowed_users': ['*'], 'allowed_paths': ['/']}, 0o644, 'nobody',
                          'must belong to root'),
    'dotdot-path': ({'allowed_paths': ['/var/log/../../etc']}, 0o644, 0, '".."'),
}


@pytest.fixture
def two_configs(site):
    """A valid worker file and client file, to start with a policy."""
    site.put([])
    client = site.workdir.join('client.json')
    write_json(client, {'master_stats': 'ipc://' + site.workdir.join('s.sock'),
                        'master_updates': 'ipc://' + site.workdir.join('u.sock'),
                        'node_name': 'n1', 'conf_file': site.config})
    return {'dpd-workerd': site.config, 'dpd-clientd': client}


@pytest.mark.parametrize('kind', sorted(BAD_POLICIES))
def test_a_bad_policy_file_stops_the_worker_and_the_client_from_starting(
        site, two_configs, kind):
    content, mode, owner, problem = BAD_POLICIES[kind]
    data = content if isinstance(content, str) else json.dumps(content)
    owner = NOBODY if owner == 'nobody' else owner
    bad = site.workdir.join('bad.json')
    put_bytes(bad, data.encode(), mode, owner)
    for program, config in sorted(two_configs.items()):
        for option in ('-t', '-f'):
            status, out, err = run(program, option, *policy_args(bad), config, timeout=WAIT)
            assert status == EX_CONFIG, (program, option, status, out, err)
            assert bad + ': ' in err and problem in err, (program, option, err)
            assert 'Traceback' not in err


def test_a_good_policy_file_lets_them_start(site, two_configs):
    for program, config in sorted(two_configs.items()):
        status, out, err = run(program, '-t', *policy_args(site.policy), config)
        assert status == 0, (program, out, err)


# ===================================================================== 9. HUP

HUP_BREAKS = {
    'not-json': (b'{"allowed_users": ["*"], ', 0o644, 0),
    'world-writable': (b'{"allowed_users": ["*"], "allowed_paths": ["/"]}', 0o666, 0),
    'owned-by-nobody': (b'{"allowed_users": ["*"], "allowed_paths": ["/"]}', 0o644, 'nobody'),
}


@pytest.mark.parametrize('kind', sorted(HUP_BREAKS))
def test_hup_with_a_bad_policy_keeps_the_policy_in_force(site, kind):
    data, mode, owner = HUP_BREAKS[kind]
    a = site.proc('a', logs=os.path.join(site.allowed, 'a.log'))
    site.put([a])
    worker = site.start_worker()
    pid_a, = site.wait_running('a')
    site.seal()
    put_bytes(site.policy, data, mode, NOBODY if owner == 'nobody' else owner)
    worker.signal(signal.SIGHUP)
    worker.wait_log('the node policy in force stays (%s)' % site.policy, WAIT)
    assert '%s: ' % site.policy in worker.log()
    assert pid_alive(worker.pid) and site.running('a') == pid_a
    # the old policy still refuses (the bad file's looser content is not used)...
    site.put([a, site.proc('evil', 'echo', 'owned', user='root', logs=site.precious['cron'])])
    site.settle(rejected(worker), 'the managed file rejected under the old policy')
    # ...and still allows (not the defaults, which would refuse allowed/)
    site.put([a, site.proc('b', logs=os.path.join(site.allowed, 'b.log'))])
    site.wait_running('b')
    assert site.running('a') == pid_a
    site.assert_intact()


# ===================================================================== known gaps

def changed_from(path, data):
    def changed():
        try:
            with open(path, 'rb') as f:
                now = f.read()
        except OSError:
            return 'removed'
        return now != data and 'now %r' % now
    return changed


@pytest.mark.parametrize('key', ['logs', 'pid_file'])
def test_the_workers_own_pid_file_through_a_link_is_refused(site, key):
    """A link inside allowed_paths that leads inside them (a process's user may own a
    directory there) is not "leading out"; but the file it reaches is the worker's lock."""
    own_pid = os.path.join(site.allowed, 'dpd-workerd.pid')
    a = site.proc('a')
    site.put([a], pid_file=own_pid)
    worker = site.start_worker()
    site.wait_running('a')
    with open(own_pid, 'rb') as f:
        before = f.read()
    assert before == b'%d\n' % worker.pid
    os.symlink(site.allowed, os.path.join(site.allowed, 'd'))
    evil = site.proc('evil', 'echo', 'owned', **{key: os.path.join(site.allowed, 'd',
                                                                   'dpd-workerd.pid')})
    site.put([a, evil], pid_file=own_pid)
    changed = changed_from(own_pid, before)
    outcome = wait_until(lambda: changed() or rejected(worker)(), WAIT, message=site.logs)
    assert outcome is True and not changed(), 'the worker\'s pid file: %s' % changed()
    assert 'a file the daemons use themselves' in worker.log()


def test_the_client_refuses_its_own_lock_as_a_pid_file(site):
    node = Node(site, allowed_users=None, client_dir=site.allowed)
    lock = node.client_config + '.lock'
    node.start([])
    node.cluster.wait_node_state('n1', 'in-sync')
    with open(lock, 'rb') as f:
        before = f.read()
    node.cluster.write_master({'n1': [site.proc('evil', pid_file=lock)]})
    changed = changed_from(lock, before)
    outcome = wait_until(lambda: changed() or node.refused('the worker file is left as it '
                                                           'is')(), WAIT, message=site.logs)
    assert outcome is True and not changed(), 'the client\'s lock: %s' % changed()
    assert 'a file the daemons use themselves' in node.client.log()


def test_hup_reads_the_same_policy_file_when_given_as_a_relative_path(site):
    """Without -f the daemon detaches (chdir /): HUP must still read the file it started
    with."""
    a = site.proc('a', logs=os.path.join(site.allowed, 'a.log'))
    log_file = os.path.join(site.allowed, 'worker.log')
    site.put([a], log_file=log_file)
    started = subprocess.run(command('dpd-workerd') + policy_args('policy.json') +
                             [site.config], cwd=site.workdir.path, capture_output=True,
                             text=True, timeout=WAIT, stdin=subprocess.DEVNULL)
    assert started.returncode == 0, started.stderr
    pid = read_pid(site.config + '.lock')
    try:
        pid_a, = site.wait_running('a')
        before = state_stamp(site)
        os.kill(pid, signal.SIGHUP)
        # the HUP's new reading of the file is judged and the state file rewritten
        # (nothing else changes here: a runs, unchanged)
        wait_until(lambda: state_stamp(site) != before, WAIT,
                   message=lambda: open(log_file).read())
        assert site.config_record()['ok'], open(log_file).read()
        assert REJECTED not in open(log_file).read()
        assert site.running('a') == pid_a
    finally:
        os.kill(pid, signal.SIGTERM)
        wait_until(lambda: not pid_alive(pid), WAIT, message='the detached worker stops')


def state_stamp(site):
    try:
        info = os.stat(site.state_file)
    except OSError:
        return None
    return info.st_ino, info.st_mtime_ns
