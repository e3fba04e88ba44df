"""SPEC 6.2 (issue 13): rlimits, a cgroup per process, whole trees stopped, OOM, usage.

Real `dpd-workerd -f -v` and real processes. Where the cgroups are is computed
here from the host, as the README's table says (the worker's code is not
asked): `/proc/self/mountinfo` and `/proc/self/cgroup` of this test, whose
cgroups the worker inherits. On a hybrid host (v1 memory/cpu/pids plus the v2
`unified` hierarchy) the limits are checked in the v1 files; on a pure v2 host
in the v2 ones. Each test ends its worker with TERM and then checks, where that
is the contract, that the worker's instance directory is gone from every
hierarchy; a janitor afterwards kills what the test started and removes what
is left of that instance's directories (never anything else).

Small programs are given as `python3 -c CODE ARGS... MARKER`: the marker lets
the janitor find every process of the test, grandchildren included.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import time

import pytest

from support import (IS_ROOT, PYTHON, REPO, TIMEOUT, Daemon, command, free_port, pid_alive,
                     pids_with, read_json, read_pid, run, wait_until, write_json)

NOBODY = 65534
CAP_SYS_RESOURCE = 24
V1_CONTROLLERS = ('memory', 'cpu', 'pids')
root_only = pytest.mark.skipif(not IS_ROOT, reason='needs root (user switch, cgroups)')


# ====================================================================== the host's cgroups

def _mounts():
    """{'': the cgroup2 mount, 'memory': its v1 mount, ...}."""
    found = {}
    with open('/proc/self/mountinfo') as f:
        for line in f:
            left, _, right = line.partition(' - ')
            fields, tail = left.split(), right.split()
            if len(fields) < 5 or len(tail) < 3:
                continue
            if tail[0] == 'cgroup2':
                found.setdefault('', fields[4])
            elif tail[0] == 'cgroup':
                for controller in V1_CONTROLLERS:
                    if controller in tail[2].split(','):
                        found.setdefault(controller, fields[4])
    return found


def cgroups_of(pid='self'):
    """{'': v2 path, 'memory': v1 path, ...} from /proc/PID/cgroup."""
    own = {}
    with open('/proc/%s/cgroup' % pid) as f:
        for line in f:
            number, controllers, path = line.rstrip('\n').split(':', 2)
            if number == '0' and controllers == '':
                own[''] = path
            for controller in controllers.split(','):
                if controller in V1_CONTROLLERS:
                    own[controller] = path
    return own


class Layout:
    """Where a root worker started by this test keeps its processes' cgroups."""

    def __init__(self):
        self.mounts, self.own = _mounts(), cgroups_of()
        self.v2 = self.mounts.get('') if '' in self.own else None
        self.v2_controllers = []
        if self.v2:
            try:
                with open(self.v2 + self.own[''].rstrip('/') + '/cgroup.controllers') as f:
                    self.v2_controllers = f.read().split()
            except OSError:
                self.v2 = None
        # a controller is used in v2 where v2 offers it, else in its v1 hierarchy
        self.v1 = [c for c in V1_CONTROLLERS if c in self.mounts and c in self.own
                   and c not in self.v2_controllers]

    @property
    def usable(self):
        return IS_ROOT and self.v2 is not None and os.access(self.v2 + self.own[''], os.W_OK)

    def holder(self, controller):
        """'' (v2), the controller's own v1 hierarchy, or None (this host lacks it)."""
        if controller in self.v2_controllers:
            return ''
        return controller if controller in self.v1 else None

    def hierarchies(self):
        return [''] + self.v1

    def relative(self, key, config, name=None):
        """The path as /proc/PID/cgroup shows it: INSTANCE[/NAME.proc] in hierarchy `key`."""
        own = self.own[key]
        base = ('/diprocd' if own == '/' else own.rstrip('/')) + '/' + instance(config)
        return base + ('/%s.proc' % name if name else '')

    def path(self, key, config, name=None):
        return self.mounts[key] + self.relative(key, config, name)


def instance(config):
    """The README's CONFIG: the resolved path with `/` as `-` (our paths need no escaping)."""
    escaped = os.path.realpath(config).strip('/').replace('/', '-')
    assert re.fullmatch(r'[A-Za-z0-9._@:+-]+', escaped), escaped
    return escaped


LAYOUT = Layout()
needs_cgroups = pytest.mark.skipif(
    not LAYOUT.usable, reason='no cgroup per process here: needs root and a writable cgroup v2 '
    'hierarchy (pure v2, or the hybrid layout\'s unified one)')


def need_controllers(*controllers):
    missing = [c for c in controllers if LAYOUT.holder(c) is None]
    if missing:
        pytest.skip('this host has no %s controller, neither in cgroup v2 nor in v1'
                    % ' or '.join(missing))


def read(path):
    with open(path) as f:
        return f.read()


def limit_files(limits):
    """(hierarchy, file, text) the README's table promises for `limits` (bytes, CPUs...)."""
    v2 = {'memory_max': lambda v: [('memory.max', str(v))],
          'memory_high': lambda v: [('memory.high', str(v))],
          'cpu_max': lambda v: [('cpu.max', '%d 100000' % int(v * 100000))],
          'cpu_weight': lambda v: [('cpu.weight', str(v))],
          'pids_max': lambda v: [('pids.max', str(v))]}
    v1 = {'memory_max': lambda v: [('memory.limit_in_bytes', str(v))],
          'memory_high': lambda v: [('memory.soft_limit_in_bytes', str(v))],
          'cpu_max': lambda v: [('cpu.cfs_period_us', '100000'),
                                ('cpu.cfs_quota_us', str(int(v * 100000)))],
          'cpu_weight': lambda v: [('cpu.shares', str(v * 1024 // 100))],
          'pids_max': lambda v: [('pids.max', str(v))]}
    out = []
    for name, value in limits.items():
        key = LAYOUT.holder(name.split('_')[0])
        files = (v2 if key == '' else v1)[name](value)
        out.extend((key, filename, text) for filename, text in files)
    return out


# ====================================================================== a worker per test

class Site:
    """One worker file in the test's directory, the workers started on it, and the
    clean-up: every worker TERMed, every marked process killed, what is left of
    this instance's cgroup directories removed (only this instance's)."""

    def __init__(self, workdir, directory=None):
        self.workdir = workdir
        self.dir = directory or workdir.path
        self.config = os.path.join(self.dir, 'worker.json')
        self.state_file = os.path.join(self.dir, 'worker.state.json')
        self.workers = []

    def write(self, *procs):
        write_json(self.config, {'procs': list(procs)})

    def start(self, *procs, daemon=None):
        if procs:
            self.write(*procs)
        worker = (daemon or Daemon('dpd-workerd', self.config)).start()
        self.workers.append(worker)
        return worker

    def records(self):
        try:
            return {p['name']: p for p in read_json(self.state_file)['procs']}
        except (OSError, ValueError, KeyError):
            return {}

    def record(self, name):
        return self.records().get(name)

    def wait_state(self, name, state, timeout=TIMEOUT, pid=None):
        """The record once `name` is in `state` (with a pid other than `pid`, if given)."""
        def reached():
            record = self.record(name)
            if record and record['state'] == state and (pid is None or record['pid'] != pid):
                return record
            return None
        return wait_until(reached, timeout, message=lambda: '%s to be %s; state: %r; log:\n%s' % (
            name, state, self.record(name), self.workers[-1].log()[-3000:]))

    def dirs(self, name=None):
        """{hierarchy: directory} of the instance, or of process `name`."""
        return {key: LAYOUT.path(key, self.config, name) for key in LAYOUT.hierarchies()}

    def instance_gone(self):
        return not any(os.path.exists(d) for d in self.dirs().values())

    def teardown(self):
        for worker in self.workers:
            if worker.proc and worker.proc.poll() is None:
                worker.proc.send_signal(signal.SIGTERM)
                try:
                    worker.proc.wait(TIMEOUT)
                except subprocess.TimeoutExpired:
                    worker.proc.kill()
                    worker.proc.wait()
        for pid in pids_with(self.workdir.marker):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if LAYOUT.usable:
            _kill_members(self.dirs()[''])      # the unmarked too (a chrooted sleep, a hog)
        wait_until(lambda: not pids_with(self.workdir.marker), 5, message='marked processes gone')
        if LAYOUT.usable:
            for directory in self.dirs().values():
                _remove_empty_tree(directory)


def _kill_members(directory):
    """KILL whatever is left in the instance's v2 cgroups (only ever ours)."""
    if not os.path.isdir(directory):
        return
    for entry in os.scandir(directory):
        if entry.is_dir(follow_symlinks=False):
            try:
                for pid in read(os.path.join(entry.path, 'cgroup.procs')).split():
                    os.kill(int(pid), signal.SIGKILL)
            except (OSError, ValueError):
                pass


def _remove_empty_tree(directory):
    if not os.path.isdir(directory):
        return
    for entry in os.scandir(directory):
        if entry.is_dir(follow_symlinks=False):
            _remove_empty_tree(entry.path)
    wait_until(lambda: _rmdir(directory), 5, message='%s removable' % directory)


def _rmdir(directory):
    try:
        os.rmdir(directory)
    except FileNotFoundError:
        pass
    except OSError:
        return False
    return True


@pytest.fixture
def site(workdir):
    made = Site(workdir)
    yield made
    made.teardown()


def program(workdir, name, code, *args, **keys):
    """A PROCESS running `python3 -c CODE ARGS... MARKER` as root, restarted by default."""
    proc = {'name': name, 'run': PYTHON, 'user': 'root', 'stop_timeout': 1,
            'args': ['-c', code] + [str(a) for a in args] + [workdir.marker_of(name)]}
    proc.update(keys)
    return proc


# Start a grandchild that leaves the process group and the session (setsid and a
# double fork), write its pid to PIDFILE, and sleep. With IGNORE-TERM the
# grandchild ignores TERM too: only KILL (cgroup.kill) ends it.
DOUBLE_FORK = r'''
import os, signal, sys
pidfile, mode = sys.argv[1], sys.argv[2]
middle = os.fork()
if middle == 0:
    os.setsid()
    if os.fork():
        os._exit(0)
    if mode == 'ignore-term':
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with open(pidfile + '.tmp', 'w') as f:
        f.write('%d\n' % os.getpid())
    os.rename(pidfile + '.tmp', pidfile)
    while True:
        signal.pause()
os.waitpid(middle, 0)
if mode == 'exit':
    while not os.path.exists(pidfile):
        signal.sigtimedwait([], 0.01)
    sys.exit(0)
while True:
    signal.pause()
'''


def grandchild_of(site, pidfile, parent):
    """The grandchild's pid, once it runs and has left its parent's group and session."""
    pid = wait_until(lambda: read_pid(pidfile), message=lambda: 'the grandchild; log:\n%s'
                     % site.workers[-1].log())
    assert os.getsid(pid) != os.getsid(parent) and os.getpgid(pid) != os.getpgid(parent)
    return pid


# ====================================================================== 1. rlimits

# below the usual hard limits (root without CAP_SYS_RESOURCE, as in a container,
# cannot raise those); "unlimited" where the hard limit is (core: its soft is 0)
RLIMITS = {'nofile': 1000, 'nproc': 4000, 'core': 'unlimited', 'fsize': 1 << 30,
           'memlock': 32768, 'stack': 16 << 20, 'as': 8 << 30, 'cpu': 3600}
LIMIT_ROWS = {'cpu': 'Max cpu time', 'fsize': 'Max file size', 'stack': 'Max stack size',
              'core': 'Max core file size', 'nproc': 'Max processes',
              'nofile': 'Max open files', 'memlock': 'Max locked memory',
              'as': 'Max address space'}


def rlimits_of(pid):
    """{name: (soft, hard)} as /proc/PID/limits says them."""
    return parse_limits(read('/proc/%d/limits' % pid))


def wait_rlimits(pid, expected, name=''):
    wait_until(lambda: rlimits_of(pid) == expected, 5, message=lambda: '%s: %r, not %r'
               % (name, rlimits_of(pid), expected))


def parse_limits(text):
    rows = {}
    for line in text.splitlines():
        match = re.match(r'(Max [a-z ]+?)\s{2,}(\S+)\s+(\S+)', line)
        if match:
            rows[match.group(1)] = (match.group(2), match.group(3))
    return {name: rows[row] for name, row in LIMIT_ROWS.items()}


# An exec health check that copies its own /proc/self/limits to PATH, and passes.
COPY_LIMITS = ("import os, shutil, sys; "
               "shutil.copyfile('/proc/self/limits', sys.argv[1] + '.tmp'); "
               "os.rename(sys.argv[1] + '.tmp', sys.argv[1])")


def has_capability(number, pid='self'):
    with open('/proc/%s/status' % pid) as f:
        effective = int(re.search(r'^CapEff:\s+([0-9a-f]+)', f.read(), re.M).group(1), 16)
    return bool(effective & (1 << number))


def expected_rlimits(limits):
    return {name: (str(value),) * 2 for name, value in limits.items()}


def _build_jail(root, programs):
    """Copy `programs` and the libraries they need under `root`."""
    for path in programs:
        needed = [path]
        ldd = subprocess.run(['ldd', path], capture_output=True, text=True).stdout
        needed += [p for line in ldd.splitlines() for p in line.split() if p.startswith('/')]
        for item in needed:
            real = os.path.realpath(item)
            for target in {item, real}:
                dest = root + target
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                if not os.path.exists(dest):
                    shutil.copyfile(real, dest)
                    os.chmod(dest, 0o755)


@root_only
def test_rlimits_on_every_start_path(site, workdir):
    """/proc/PID/limits shows each rlimit, soft = hard, "unlimited" included: for a
    plain process (prlimit), one switched to nobody (prlimit, then setpriv), one in
    a chroot (the launcher) and a `daemon: true` one (the daemon inherits them)."""
    mine = rlimits_of(os.getpid())
    above = [n for n, v in RLIMITS.items() if mine[n][1] != 'unlimited'
             and (v == 'unlimited' or v > int(mine[n][1]))]
    if above and not has_capability(CAP_SYS_RESOURCE):
        pytest.skip('this root may not raise its hard %s (no CAP_SYS_RESOURCE)' % above)
    jail = workdir.join('jail')
    _build_jail(jail, [shutil.which('sleep')])
    daemon_pid = workdir.join('daemon.pid')
    site.start(
        workdir.actor('plain', 'sleep', limits=RLIMITS),
        workdir.actor('nobody', 'sleep', user='nobody', limits=RLIMITS),
        {'name': 'jailed', 'run': shutil.which('sleep'), 'args': ['1000'], 'chroot': jail,
         'user': 'nobody', 'limits': RLIMITS, 'stop_timeout': 1},
        workdir.actor('daemon', 'daemonize', daemon_pid, daemon=True, pid_file=daemon_pid,
                      write_pid=False, limits=RLIMITS))
    pids = {name: site.wait_state(name, 'running')['pid']
            for name in ('plain', 'nobody', 'jailed', 'daemon')}
    assert pids['daemon'] == read_pid(daemon_pid)
    for name, pid in pids.items():
        # `running` comes at the spawn: prlimit or the launcher may not have exec'd yet
        wait_rlimits(pid, expected_rlimits(RLIMITS), name)
    wait_until(lambda: re.search(r'^Uid:\s+65534\s', read('/proc/%d/status' % pids['nobody']),
                                 re.M), message='the user switch happened too')
    wait_until(lambda: os.readlink('/proc/%d/root' % pids['jailed']) == jail)
    if LAYOUT.usable:      # every start path is born in its process's cgroup
        for name, pid in pids.items():
            assert cgroups_of(pid)[''] == LAYOUT.relative('', site.config, name), name
    # without `limits`, a child keeps what the worker was given (nothing is imposed)
    site.write(workdir.actor('free', 'sleep'))
    free = site.wait_state('free', 'running')['pid']
    wait_rlimits(free, rlimits_of(os.getpid()), 'free')
    assert site.workers[-1].stop() == 0


@root_only
def test_an_exec_health_check_runs_with_the_process_rlimits(site, workdir):
    checked = workdir.join('check.limits')
    worker = site.start(workdir.actor('checked', 'sleep', limits=RLIMITS, health={
        'exec': [PYTHON, '-c', COPY_LIMITS, checked], 'interval': 1}))
    wait_until(lambda: os.path.exists(checked) or 'failed to perform RunCheck' in worker.log(),
               message=lambda: worker.log())
    try:
        assert parse_limits(read(checked)) == expected_rlimits(RLIMITS)
        site.wait_state('checked', 'running')
    finally:
        assert worker.stop() == 0


# ====================================================================== 2, 10. cgroups, usage

@needs_cgroups
def test_each_process_in_its_own_cgroup_with_its_limits_and_usage(site, workdir):
    """Membership in the unified (or only) hierarchy for every process, v1 cgroups
    only for the limits a process has, the limit files as configured; then usage:
    within 16 s the state file and `dpd-ctl status` show memory and CPU time."""
    need_controllers('memory', 'cpu', 'pids')
    limits = {'memory_max': '64M', 'memory_high': '16M', 'pids_max': 50, 'cpu_max': 0.5,
              'cpu_weight': 200}
    begun = time.monotonic()
    site.start(workdir.actor('plain', 'sleep'), workdir.actor('capped', 'sleep', limits=limits))
    plain, capped = (site.wait_state(n, 'running') for n in ('plain', 'capped'))
    for record in (plain, capped):
        name, pid = record['name'], record['pid']
        mine = cgroups_of(pid)
        assert mine[''] == LAYOUT.relative('', site.config, name), mine
        assert record['cgroup'] == mine[''], 'the state file names it, for adoption'
        assert pid in map(int, read(os.path.join(site.dirs(name)[''], 'cgroup.procs')).split())
    # no limits: no v1 cgroup of its own (it stays where the worker is)
    for controller in LAYOUT.v1:
        assert cgroups_of(plain['pid'])[controller] == LAYOUT.own[controller]
        assert not os.path.exists(site.dirs('plain')[controller])
    # with limits: every v1 controller they need, below the worker's own place there
    for controller in LAYOUT.v1:
        assert cgroups_of(capped['pid'])[controller] == \
            LAYOUT.relative(controller, site.config, 'capped')
    wanted = {'memory_max': 64 << 20, 'memory_high': 16 << 20, 'pids_max': 50, 'cpu_max': 0.5,
              'cpu_weight': 200}
    for key, filename, text in limit_files(wanted):
        assert read(os.path.join(site.dirs('capped')[key], filename)).strip() == text, filename

    # usage: read every 15 s (USAGE_INTERVAL) from the trees into the state file
    def sampled():
        records = site.records()
        return all(isinstance(records[n].get('memory_bytes'), int) and records[n]['memory_bytes']
                   > 0 and isinstance(records[n].get('cpu_seconds'), (int, float))
                   and records[n]['cpu_seconds'] >= 0 for n in ('plain', 'capped')) and records
    records = wait_until(sampled, max(1.0, 16.5 - (time.monotonic() - begun)),
                         message=lambda: 'usage in the state file: %r' % site.records())
    assert records['capped']['memory_bytes'] <= 64 << 20
    status, out, _ = run('dpd-ctl', 'status', site.config)
    assert status == 0, out
    for line in out.splitlines():
        assert re.search(r'pid \d+, uptime [0-9:]+, mem [0-9.]+[KMG]?B?, '
                         r'cpu \d+:\d\d:\d\d,', line), line
    assert site.workers[-1].stop() == 0
    assert site.instance_gone(), 'a worker stopped by TERM removes its cgroups'


# ====================================================================== 9. removal

@needs_cgroups
def test_a_removed_process_loses_its_cgroups_in_every_hierarchy(site, workdir):
    need_controllers('memory', 'cpu', 'pids')
    gone = workdir.actor('gone', 'sleep', stop_timeout=1,
                         limits={'memory_max': '64M', 'pids_max': 20, 'cpu_max': 1})
    worker = site.start(gone, workdir.actor('stay', 'sleep'))
    site.wait_state('gone', 'running')
    site.wait_state('stay', 'running')
    dirs = site.dirs('gone')
    assert all(os.path.isdir(d) for d in dirs.values()), dirs
    site.write(workdir.actor('stay', 'sleep'))
    worker.wait_log('gone: removed')
    wait_until(lambda: not any(os.path.exists(d) for d in dirs.values()),
               message=lambda: 'every cgroup of "gone" removed: %r'
               % [d for d in dirs.values() if os.path.exists(d)])
    assert os.path.isdir(site.dirs('stay')[''])
    assert worker.stop() == 0
    assert site.instance_gone()


@needs_cgroups
def test_a_changed_definition_starts_in_fresh_cgroups(site, workdir):
    """New limits restart the process (its fingerprint changed); no limit of the old
    definition is left: a v1 cgroup it no longer needs is gone, the new one is set."""
    need_controllers('memory', 'pids')
    worker = site.start(workdir.actor('p', 'sleep', limits={'memory_max': '64M'}))
    first = site.wait_state('p', 'running')['pid']
    site.write(workdir.actor('p', 'sleep', limits={'pids_max': 20}))
    worker.wait_log('p: definition changed')
    second = site.wait_state('p', 'running', pid=first)['pid']
    assert not pid_alive(first)
    dirs, memory, pids = site.dirs('p'), LAYOUT.holder('memory'), LAYOUT.holder('pids')
    if memory:
        assert not os.path.exists(dirs[memory])
        assert cgroups_of(second)[memory] == LAYOUT.own[memory]
    else:
        assert read(os.path.join(dirs[''], 'memory.max')).strip() == 'max'
    assert read(os.path.join(dirs[pids], 'pids.max')).strip() == '20'
    assert read(os.path.join(dirs[''], 'cgroup.procs')).split() == [str(second)]
    assert worker.stop() == 0
    assert site.instance_gone()


@needs_cgroups
def test_a_limit_the_kernel_refuses_fails_the_process_naming_it(site, workdir):
    need_controllers('memory')
    worker = site.start(workdir.actor('tiny', 'sleep', limits={'memory_max': '4K'}),
                        workdir.actor('fine', 'sleep'))
    record = site.wait_state('tiny', 'failed')
    assert site.wait_state('fine', 'running')
    wait_until(lambda: pids_with(workdir.marker_of('tiny')) == [], 2,
               message='it does not run unlimited')
    try:
        assert 'memory_max' in record['error'], record['error']
    finally:
        assert worker.stop() == 0


@needs_cgroups
def test_removing_an_exited_process_ends_what_it_left_behind(site, workdir):
    pidfile = workdir.join('left.pid')
    once = program(workdir, 'once', DOUBLE_FORK, pidfile, 'exit', restart=False)
    worker = site.start(once, workdir.actor('stay', 'sleep'))
    record = site.wait_state('once', 'exited')
    assert record['last_exit']['code'] == 0
    left = read_pid(pidfile)
    assert pid_alive(left), 'its grandchild outlived it, in its cgroup'
    site.write(workdir.actor('stay', 'sleep'))
    worker.wait_log('once: removed')
    try:
        wait_until(lambda: not pid_alive(left), 3, message='the leftover ended at the removal')
        assert not os.path.exists(site.dirs('once')[''])
    finally:
        assert worker.stop() == 0
    assert site.instance_gone()


# ====================================================================== 3. whole trees stop

@needs_cgroups
def test_stop_ends_grandchildren_that_left_the_group(site, workdir):
    """A grandchild that left the group and session (setsid, double fork) dies at a
    stop: at a removal (it ignores TERM: KILL after stop_timeout, through the
    cgroup), and at the worker's TERM; both stops finish at once after that."""
    a_pid, b_pid = workdir.join('a.grand'), workdir.join('b.grand')
    worker = site.start(program(workdir, 'a', DOUBLE_FORK, a_pid, 'ignore-term'),
                        program(workdir, 'b', DOUBLE_FORK, b_pid, 'plain'))
    a, b = (site.wait_state(n, 'running')['pid'] for n in 'ab')
    a_grand, b_grand = grandchild_of(site, a_pid, a), grandchild_of(site, b_pid, b)
    assert cgroups_of(a_grand)[''] == LAYOUT.relative('', site.config, 'a')

    begun = time.monotonic()
    site.write(program(workdir, 'b', DOUBLE_FORK, b_pid, 'plain'))
    worker.wait_log('a: removed', timeout=5)
    assert time.monotonic() - begun < 3.5, 'KILL after stop_timeout (1 s), then done'
    assert not pid_alive(a) and not pid_alive(a_grand)
    assert 'a: still running 1 s after SIGTERM; sending KILL' in worker.log()

    begun = time.monotonic()
    assert worker.stop() == 0
    assert time.monotonic() - begun < 3, 'TERM reached the grandchild through the cgroup'
    assert not pid_alive(b) and not pid_alive(b_grand)
    assert 'b: still running' not in worker.log()
    assert pids_with(workdir.marker) == []
    assert site.instance_gone()


# ====================================================================== 4. leftovers, a port

# Bind PORT on 127.0.0.1 or exit 1. The first run (no FIRST file yet) leaves a
# grandchild holding the socket (setsid, double fork) and exits by itself; the
# next runs stay. RECORD gets a line per event.
PORT_HOLDER = r'''
import os, signal, socket, sys
port, record, first = int(sys.argv[1]), sys.argv[2], sys.argv[3]
def say(text):
    with open(record, 'a') as f:
        f.write(text + '\n')
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(('127.0.0.1', port))
except OSError as err:
    say('failed %d %s' % (os.getpid(), err))
    sys.exit(1)
s.listen(8)
say('bound %d' % os.getpid())
if os.path.exists(first):
    while True:
        signal.pause()
open(first, 'w').close()
r, w = os.pipe()
middle = os.fork()
if middle == 0:
    os.setsid()
    if os.fork() == 0:
        say('holder %d' % os.getpid())
        os.write(w, b'x')
        while True:
            signal.pause()
    os._exit(0)
os.waitpid(middle, 0)
os.read(r, 1)
sys.exit(0)
'''


@needs_cgroups
def test_a_leftover_holding_the_port_is_killed_before_the_next_start(site, workdir):
    record, first = workdir.join('record'), workdir.join('first')
    port = free_port()
    worker = site.start(program(workdir, 'web', PORT_HOLDER, port, record, first))

    def lines():
        try:
            return read(record).split('\n')[:-1]
        except OSError:
            return []
    wait_until(lambda: sum(line.startswith('bound') for line in lines()) >= 2,
               message=lambda: 'a second bind; record %r, log:\n%s' % (lines(), worker.log()))
    holder = int(next(line for line in lines() if line.startswith('holder')).split()[1])
    second = int([line for line in lines() if line.startswith('bound')][1].split()[1])
    running = site.wait_state('web', 'running')
    assert running['pid'] == second and running['restarts'] == 1
    assert not pid_alive(holder), 'the orphan of the first run was killed first'
    assert not [line for line in lines() if line.startswith('failed')], lines()
    assert 'web: killing what its last run left in its cgroup' in worker.log()
    with socket.create_connection(('127.0.0.1', port), timeout=5):
        pass                                # the new run holds the port
    assert worker.stop() == 0
    assert site.instance_gone()


# ====================================================================== 5. OOM

HOG = "b = b'x' * (256 << 20)"


@needs_cgroups
def test_a_memory_hog_is_oom_killed_counted_as_a_crash_and_backs_off(site, workdir):
    need_controllers('memory')
    worker = site.start(program(workdir, 'hog', HOG, limits={'memory_max': '32M'}),
                        workdir.actor('calm', 'sleep'))
    record = site.wait_state('hog', 'backoff', timeout=20)
    assert record['restarts'] == 4, 'five counted starts (the first and four restarts)'
    assert record['last_exit']['oom'] == 'out of memory (memory_max 32M)'
    assert record['last_exit']['signal'] == signal.SIGKILL
    assert worker.log().count('hog: killed by the OOM killer: out of memory (memory_max 32M)') \
        == 5
    status, out, _ = run('dpd-ctl', 'status', site.config)
    assert status == 150, out
    line = next(line for line in out.splitlines() if line.startswith('hog'))
    assert 'BACKOFF' in line and 'last exit out of memory (memory_max 32M) at' in line, line
    assert site.record('calm')['state'] == 'running', 'nothing else was touched'
    assert worker.stop() == 0
    assert site.instance_gone()


# ====================================================================== 6. pids_max

# Fork children (each sleeps) until fork fails; write how many succeeded to
# RECORD at the first failure; go on trying, slowly, for ever.
FORKER = r'''
import os, signal, sys, time
record, children, failures = sys.argv[1], 0, 0
while True:
    try:
        pid = os.fork()
    except OSError:
        failures += 1
        if failures == 1:
            with open(record + '.tmp', 'w') as f:
                f.write('%d\n' % children)
            os.rename(record + '.tmp', record)
        time.sleep(0.002)
        continue
    if pid == 0:
        while True:
            signal.pause()
    children += 1
'''


@needs_cgroups
def test_a_fork_loop_stays_under_pids_max(site, workdir):
    need_controllers('pids')
    record = workdir.join('forks')
    worker = site.start(program(workdir, 'forker', FORKER, record, limits={'pids_max': 10}))
    pid = site.wait_state('forker', 'running')['pid']
    pids_dir = site.dirs('forker')[LAYOUT.holder('pids')]
    assert read(os.path.join(pids_dir, 'pids.max')).strip() == '10'
    children = wait_until(lambda: read_pid(record), message=lambda: 'a fork refused; log:\n%s'
                          % worker.log())
    assert 1 <= children <= 9
    samples, deadline = [], time.monotonic() + 1.0
    while time.monotonic() < deadline:           # bounded sampling while it keeps trying
        samples.append(int(read(os.path.join(pids_dir, 'pids.current'))))
        time.sleep(0.002)
    assert max(samples) <= 10 and min(samples) >= 2, (min(samples), max(samples))
    assert len(pids_with(workdir.marker_of('forker'))) <= 10
    record_now = site.record('forker')
    assert record_now['state'] == 'running' and record_now['pid'] == pid, 'it survived'
    assert worker.stop() == 0
    assert pids_with(workdir.marker) == [], 'the whole tree stopped'
    assert site.instance_gone()


# ====================================================================== 7. non-root worker

class WrappedWorker(Daemon):
    """dpd-workerd started through `prefix` (prlimit, setpriv...)."""

    def __init__(self, config, prefix, program=None):
        super().__init__('dpd-workerd', config)
        self.prefix, self.program_argv = list(prefix), program or command('dpd-workerd')

    def start(self, wait_ready=True, timeout=TIMEOUT):
        with open(self.log_path, 'ab') as log:
            self.log_offset = log.tell()
            self.proc = subprocess.Popen(
                self.prefix + self.program_argv + ['-f', '-v', self.config],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        if wait_ready:
            self.wait_log('ready (pid %d' % self.proc.pid, timeout)
        return self


def nobody_worker(config, nofile):
    """dpd-workerd as nobody (setpriv), its hard nofile lowered first (prlimit)."""
    return WrappedWorker(config, ['prlimit', '--nofile=%d:%d' % (nofile, nofile), '--']
                         + as_nobody([]), [PYTHON, os.path.join(REPO, 'bin', 'dpd-workerd')])


def as_nobody(argv):
    return ['setpriv', '--reuid=%d' % NOBODY, '--regid=%d' % NOBODY, '--clear-groups',
            '--'] + list(argv)


def nobody_can_run_the_worker():
    if not IS_ROOT or not shutil.which('setpriv') or not shutil.which('prlimit'):
        return False
    done = subprocess.run(as_nobody([PYTHON, '-c', 'import sys, zmq; sys.path.insert(0, %r); '
                                     'import dpd.worker.main' % REPO]),
                          capture_output=True, timeout=30, cwd='/')
    return done.returncode == 0


@pytest.mark.skipif(not nobody_can_run_the_worker(), reason='needs root, setpriv, prlimit and '
                    'an interpreter with pyzmq that nobody can run on this checkout')
def test_a_worker_that_is_not_root_fails_what_it_cannot_enforce(workdir):
    directory = workdir.join('nobody')
    os.mkdir(directory)
    os.chown(directory, NOBODY, NOBODY)
    site = Site(workdir, directory)
    try:
        worker = site.start(
            workdir.actor('capped', 'sleep', user='nobody',
                          limits={'memory_max': '64M', 'pids_max': 20}),
            workdir.actor('free', 'sleep', user='nobody', limits={'nofile': 512}),
            workdir.actor('over', 'sleep', user='nobody', limits={'nofile': 2048}),
            daemon=nobody_worker(os.path.join(directory, 'worker.json'), nofile=1024))
        free = site.wait_state('free', 'running')['pid']
        wait_until(lambda: rlimits_of(free)['nofile'] == ('512', '512'),
                   message='rlimits work everywhere')
        capped = site.wait_state('capped', 'failed')
        assert 'memory_max 64M' in capped['error'] and 'pids_max 20' in capped['error'], \
            capped['error']
        over = site.wait_state('over', 'failed')
        assert 'limits.nofile 2048' in over['error'] and 'hard limit 1024' in over['error'], \
            over['error']
        assert len(pids_with(workdir.marker)) == 1, 'neither failed process ever ran'
        status, out, _ = run('dpd-ctl', 'status', site.config)
        assert status == 150 and 'memory_max' in out, out
        assert 'a cgroup per process' not in worker.log()
        if LAYOUT.v2:
            assert not os.path.exists(LAYOUT.path('', site.config)), 'it made no cgroup'
        assert worker.stop() == 0
    finally:
        site.teardown()


@pytest.mark.skipif(not IS_ROOT or not shutil.which('setpriv') or not shutil.which('prlimit'),
                    reason='needs root, setpriv and prlimit')
def test_a_root_worker_without_cap_sys_resource_fails_an_rlimit_it_cannot_raise(site, workdir):
    """The worker is root but may not raise hard limits (its bounding set lacks
    CAP_SYS_RESOURCE, as in a container); asked for more than its hard memlock."""
    prefix = ['prlimit', '--memlock=65536:65536', '--', 'setpriv',
              '--bounding-set=-sys_resource', '--']
    worker = site.start(workdir.actor('locked', 'sleep', limits={'memlock': 1 << 20}),
                        workdir.actor('fine', 'sleep'),
                        daemon=WrappedWorker(site.config, prefix))
    assert not has_capability(CAP_SYS_RESOURCE, worker.pid)
    site.wait_state('fine', 'running')
    record = wait_until(lambda: (site.record('locked') or {}).get('state') in ('failed', 'backoff')
                        and site.record('locked'), message=lambda: worker.log())
    assert record['state'] == 'failed' and 'limits.memlock 1048576' in record['error'], \
        (record['state'], record['error'], record['last_exit'])
    assert worker.stop() == 0


# ====================================================================== 8. adoption

@needs_cgroups
def test_adoption_keeps_the_cgroup_and_a_term_stop_ends_the_whole_tree(site, workdir):
    need_controllers('memory', 'pids')
    grand_file = workdir.join('grand.pid')
    tree = program(workdir, 'tree', DOUBLE_FORK, grand_file, 'ignore-term',
                   limits={'memory_max': '64M', 'pids_max': 20})
    first = site.start(tree)
    record = site.wait_state('tree', 'running')
    pid = record['pid']
    grand = grandchild_of(site, grand_file, pid)
    membership = cgroups_of(pid)
    assert cgroups_of(grand) == membership
    assert record['cgroup'] == membership['']

    first.kill9()
    assert pid_alive(pid) and pid_alive(grand)
    second = site.start()
    second.wait_log('tree: adopted (pid %d)' % pid)
    adopted = site.wait_state('tree', 'running')
    assert adopted['pid'] == pid and adopted['cgroup'] == record['cgroup']
    assert ': running (pid' not in second.log(), 'nothing was started'
    assert cgroups_of(pid) == membership and cgroups_of(grand) == membership
    assert second.stop() == 0
    assert not pid_alive(pid) and not pid_alive(grand), 'the whole adopted tree stopped'
    assert 'tree: still running 1 s after SIGTERM; sending KILL' in second.log(), \
        'the grandchild ignored TERM: KILL through the cgroup ended it'
    assert site.instance_gone()


@needs_cgroups
def test_a_pid_no_longer_in_its_cgroup_is_not_adopted(site, workdir):
    worker = site.start(workdir.actor('moved', 'sleep'))
    old = site.wait_state('moved', 'running')['pid']
    worker.kill9()
    # out of its cgroup: into this test's own place in the v2 hierarchy
    with open(LAYOUT.v2 + LAYOUT.own[''].rstrip('/') + '/cgroup.procs', 'w') as f:
        f.write(str(old))
    try:
        assert cgroups_of(old)[''] == LAYOUT.own['']
        second = site.start()
        second.wait_log('moved: pid %d is not in the cgroup it was started in; not adopted' % old)
        new = site.wait_state('moved', 'running', pid=old)['pid']
        assert cgroups_of(new)[''] == LAYOUT.relative('', site.config, 'moved')
        assert pid_alive(old), 'a process not adopted is never signalled'
        assert second.stop() == 0
        assert pid_alive(old) and not pid_alive(new)
        assert site.instance_gone()
    finally:
        try:
            os.kill(old, signal.SIGKILL)
            os.waitpid(old, 0)            # ours since its worker died (we are a subreaper)
        except (ProcessLookupError, ChildProcessError):
            pass


# ====================================================================== 11. bad limits, live

def test_bad_limits_reject_the_whole_file_with_the_json_path(site, workdir):
    worker = site.start(workdir.actor('a', 'sleep'))
    pid = site.wait_state('a', 'running')['pid']
    bad = [workdir.actor('a', 'sleep', limits={'memory_max': '12Q'}),
           workdir.actor('b', 'sleep', limits={'nofiles': 10})]
    site.write(*bad)
    expected = ['procs[0] ("a").limits.memory_max: must be a number of bytes or a size such as '
                '"512M" or "2G" (K, M, G, T), not "12Q"',
                'procs[1] ("b").limits: unknown key "nofiles" (did you mean "nofile"?)']
    state = wait_until(lambda: (lambda doc: doc if not doc['config']['ok'] else None)(
        read_json(site.state_file)), message=lambda: worker.log())
    for message in expected:
        assert any(message in error for error in state['config']['errors']), \
            (message, state['config']['errors'])
    code, out, err = run('dpd-workerd', '-t', site.config)
    assert code == 78 and all(m in out + err for m in expected), out + err
    assert site.record('a')['pid'] == pid and 'b' not in site.records(), 'nothing changed'
    assert worker.stop() == 0


# ====================================================================== 12. not runnable

@root_only
def test_a_program_the_kernel_cannot_run_is_failed_on_both_paths(site, workdir):
    """Direct (a root process) and through setpriv (nobody): a missing `#!`
    interpreter, or no `#!` at all, is `failed` with the reason before the start;
    never exit 127, never run by /bin/sh."""
    missing, bare = workdir.join('missing-interp'), workdir.join('bare-script')
    ran = workdir.join('ran')
    with open(missing, 'w') as f:
        f.write('#!/nonexistent/interpreter\ntouch %s\n' % ran)
    with open(bare, 'w') as f:
        f.write('touch %s\n' % ran)
    for path in (missing, bare):
        os.chmod(path, 0o755)
    procs = [{'name': '%s-%s' % (kind, user), 'run': path, 'user': user}
             for kind, path in (('interp', missing), ('bare', bare))
             for user in ('root', 'nobody')]
    worker = site.start(*procs, workdir.actor('fine', 'sleep'))
    for user in ('root', 'nobody'):
        interp = site.wait_state('interp-' + user, 'failed')
        assert interp['error'] == ('cannot run %s: its interpreter /nonexistent/interpreter is '
                                   'missing (check the "#!" line)' % missing), interp['error']
        bare_record = site.wait_state('bare-' + user, 'failed')
        assert bare_record['error'] == ('cannot run %s: not a program the kernel can run '
                                        '(missing "#!" line?)' % bare), bare_record['error']
        assert interp['last_exit'] is None and bare_record['last_exit'] is None
    site.wait_state('fine', 'running')
    assert ': running (pid' in worker.log() and 'status 127' not in worker.log()
    assert not any('%s: running' % p['name'] in worker.log() for p in procs)
    assert not os.path.exists(ran), 'never run by a shell'
    assert worker.stop() == 0
