"""Readiness, health checks and dependencies with a real dpd-workerd and real
children (SPEC 6.1): tcp, http and exec probes, sd_notify (READY=1, STATUS=,
WATCHDOG=1) from the process's own tree only, depends order, adoption, and a
real Debian daemon that speaks sd_notify (redis-server).

Children are tests/readiness_actor.py: they listen, answer, notify and record
what happens to them on cue (a file appears, a signal), so every wait has a
deadline and nothing depends on a bare sleep.
"""
import contextlib
import json
import os
import pwd
import signal
import socket
import subprocess
import time

import pytest

from support import (IS_ROOT, PYTHON, REPO, WorkerSite, free_port, pid_alive, read_json,
                     run, wait_until, write_json)

pytestmark = pytest.mark.skipif(not IS_ROOT, reason='runs children as nobody and other '
                                'users, in cgroups: needs root')

ACTOR = os.path.join(REPO, 'tests', 'readiness_actor.py')
EX_CONFIG = 78
EX_DEGRADED = 150
REDIS = '/usr/bin/redis-server'
REFUSED = ('Connection refused', 'ECONNREFUSED')     # strerror, or the errno's name


# ===================================================================== helpers

def actor(workdir, name, *args, **keys):
    """A PROCESS running readiness_actor.py as root (unless `user` is given)."""
    entry = {'name': name, 'run': PYTHON,
             'args': [ACTOR, '--name', name] + [str(a) for a in args]
             + [workdir.marker_of(name)],
             'user': 'root', 'stop_timeout': 2}
    entry.update(keys)
    return entry


class Worker(WorkerSite):
    """One dpd-workerd on workdir/worker.json, and what it shows."""

    def __init__(self, workdir, *procs):
        super().__init__(workdir, *procs)
        self.workdir = workdir

    def log(self):
        return self.daemon.log()

    def healthy_log(self):
        """The log, after checking that the worker has not hit an error of its own."""
        text = self.daemon.log()
        for sign in ('Traceback', 'failed to perform'):
            if sign in text:
                raise AssertionError('the worker failed:\n%s' % text[-4000:])
        return text

    def doc(self):
        return read_json(self.state_file)

    def wait(self, name, timeout=10, message=None, **expected):
        """Until the process's record has the `expected` values; the record."""
        def reached():
            self.healthy_log()
            record = self.record(name)
            return record if record is not None and all(
                record.get(k) == v for k, v in expected.items()) else None
        return wait_until(reached, timeout, message=lambda: '%s: %s %r; record %s; log:\n%s' % (
            message or 'a record', name, expected, json.dumps(self.record(name)),
            self.log()[-3000:]))

    def wait_log(self, text, timeout=10, count=1):
        self.daemon.wait_log(text, timeout, count)

    def status(self):
        """dpd-ctl status: (exit status, the line of each process by name)."""
        code, out, err = run('dpd-ctl', 'status', self.config)
        lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
        return code, lines

    def edit(self, *procs):
        write_json(self.config, {'procs': list(procs)})

    def stop(self):
        return self.daemon.stop()


@pytest.fixture
def worker_of(workdir):
    """worker_of(*procs) starts a worker; every worker started is stopped after."""
    started = []

    def start(*procs):
        worker = Worker(workdir, *procs).start()
        started.append(worker)
        return worker
    yield start
    for worker in started:
        worker.stop()


def environ(pid):
    with open('/proc/%d/environ' % pid, 'rb') as f:
        pairs = [item.partition(b'=') for item in f.read().split(b'\0') if item]
    return {k.decode(): v.decode() for k, _, v in pairs}


def records(path):
    """The lines a readiness_actor --record FILE wrote: (what, name, pid, time)."""
    try:
        with open(path) as f:
            lines = [line.split() for line in f if line.strip()]
    except FileNotFoundError:
        return []
    return [(what, name, int(pid), float(at)) for what, name, pid, at in lines]


def events(path, what=None, name=None):
    return [r for r in records(path) if (what is None or r[0] == what)
            and (name is None or r[1] == name)]


def children(pid):
    with open('/proc/%d/task/%d/children' % (pid, pid)) as f:
        return [int(p) for p in f.read().split()]


def touch(path):
    open(path, 'w').close()


def stays(predicate, seconds, message):
    """`predicate` holds all along `seconds` (polled), or the test fails at once."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert predicate(), message
        time.sleep(0.02)


def send_notify(address, text):
    """sd_notify from this (foreign) process to an abstract NOTIFY_SOCKET."""
    assert address.startswith('@')
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(text.encode(), '\0' + address[1:])


def tcp(port, **keys):
    return dict({'tcp': '127.0.0.1:%d' % port, 'interval': 0.2, 'timeout': 0.2}, **keys)


def refused(target, text):
    """`text` is "TARGET: connection refused", in either spelling."""
    return text in ['%s: %s' % (target, word) for word in REFUSED]


def kill_all(pids):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# ===================================================================== tcp, http

def test_tcp_check_starting_then_running_then_unhealthy_is_restarted(workdir, worker_of):
    port, go = free_port(), workdir.join('go')
    worker = worker_of(actor(workdir, 't', '--listen', port, '--when', go,
                             health=tcp(port, retries=2, start_period=20)))
    record = worker.wait('t', state='starting', health='starting')
    first = record['pid']
    code, lines = worker.status()
    assert code == EX_DEGRADED and 'STARTING' in lines['t'] and 'starting' in lines['t']
    assert 't: started, not ready yet (pid %d)' % first in worker.log()
    touch(go)
    record = worker.wait('t', state='running', health='healthy')
    assert record['pid'] == first and record['health_error'] is None
    code, lines = worker.status()
    assert code == 0 and 'RUNNING' in lines['t'] and 'healthy' in lines['t']
    worker.wait_log('t: ready')
    os.kill(first, signal.SIGUSR2)                # it stops listening
    worker.wait_log('; restarting it')
    [line] = [text for text in worker.log().splitlines() if 't: unhealthy: ' in text]
    reason = line.split('t: unhealthy: ', 1)[1][:-len('; restarting it')]
    assert refused('127.0.0.1:%d' % port, reason), line
    record = worker.wait('t', state='running', health='healthy', restarts=1)
    assert record['pid'] != first and not pid_alive(first)
    assert len(record['starts']) == 2, 'the restart counts toward the restart limit'


def test_on_unhealthy_none_only_says_it_and_a_pass_makes_it_healthy_again(workdir, worker_of):
    port = free_port()
    worker = worker_of(actor(workdir, 't', '--listen', port,
                             health=tcp(port, retries=2, on_unhealthy='none')))
    pid = worker.wait('t', state='running', health='healthy')['pid']
    os.kill(pid, signal.SIGUSR2)
    record = worker.wait('t', health='unhealthy')
    assert record['state'] == 'running' and record['pid'] == pid and record['restarts'] == 0
    reason = record['health_error']
    assert refused('127.0.0.1:%d' % port, reason)
    code, lines = worker.status()
    assert code == EX_DEGRADED and 'RUNNING' in lines['t']
    assert 'unhealthy (%s)' % reason in lines['t']
    assert 't: unhealthy: %s\n' % reason in worker.log()          # no "restarting it"
    os.kill(pid, signal.SIGHUP)                   # it listens again
    worker.wait('t', health='healthy', health_error=None)
    worker.wait_log('t: healthy again')
    code, lines = worker.status()
    assert code == 0 and 'healthy' in lines['t'] and 'unhealthy' not in lines['t']
    assert pid_alive(pid) and worker.record('t')['pid'] == pid


def test_http_check_passes_on_2xx_and_3xx_and_fails_on_the_status(workdir, worker_of):
    port, code_file = free_port(), workdir.join('code')
    worker = worker_of(actor(workdir, 'web', '--http', port, '--code-file', code_file,
                             health={'http': 'http://127.0.0.1:%d/health' % port,
                                     'interval': 0.2, 'retries': 1, 'on_unhealthy': 'none'}))
    pid = worker.wait('web', state='running', health='healthy')['pid']
    for answer, health in (('500', 'unhealthy'), ('302', 'healthy'), ('404', 'unhealthy'),
                           ('204', 'healthy'), ('301', 'healthy')):
        with open(code_file + '.tmp', 'w') as f:
            f.write(answer)
        os.rename(code_file + '.tmp', code_file)
        record = worker.wait('web', health=health, message='HTTP %s' % answer)
        if health == 'unhealthy':
            assert record['health_error'] == 'HTTP %s Test' % answer
    assert worker.log().count('web: unhealthy: HTTP 500 Test') == 1
    os.kill(pid, signal.SIGUSR2)                  # nothing listens: the connection's error
    record = worker.wait('web', health='unhealthy')
    assert refused('http://127.0.0.1:%d/health' % port, record['health_error'])
    assert worker.record('web')['pid'] == pid


def test_an_http_server_that_never_answers_fails_by_timeout(workdir, worker_of):
    """It accepts (the kernel does, in its backlog) and says nothing."""
    silent = socket.socket()
    silent.bind(('127.0.0.1', 0))
    silent.listen(16)
    port = silent.getsockname()[1]
    try:
        worker = worker_of(actor(workdir, 'mute', health={
            'http': 'http://127.0.0.1:%d/' % port, 'interval': 0.5, 'timeout': 0.3,
            'start_period': 30}))
        record = worker.wait('mute', health_error='timeout after 0.3 s')
        assert record['state'] == 'starting' and record['health'] == 'starting'
    finally:
        silent.close()


# ===================================================================== exec

def exec_check(workdir, script, **keys):
    """An exec health check: /bin/sh -c SCRIPT, marked to be found (and killed)."""
    return dict({'exec': ['/bin/sh', '-c', script, workdir.marker + '-check'],
                 'interval': 0.3, 'timeout': 0.3, 'retries': 1}, **keys)


def shared_dir(workdir):
    path = workdir.join('shared')
    os.makedirs(path, exist_ok=True)
    os.chmod(path, 0o777)
    return path


def check_pids(path):
    """The `$$ $!` lines a hanging check wrote: [(shell, its background child)]."""
    try:
        with open(path) as f:
            return [tuple(map(int, line.split())) for line in f if len(line.split()) == 2]
    except FileNotFoundError:
        return []


def test_an_exec_check_that_hangs_is_killed_with_its_group_at_the_timeout(workdir, worker_of):
    pids_file = os.path.join(shared_dir(workdir), 'checks')
    worker = worker_of(actor(workdir, 'e', health=exec_check(
        workdir, 'sleep 100 & echo $$ $! >> %s; wait' % pids_file,
        interval=2, timeout=0.3, start_period=30)))
    first = wait_until(lambda: worker.healthy_log() is not None and check_pids(pids_file),
                       5, message='the first check ran')[0]
    started = time.monotonic()
    wait_until(lambda: not any(map(pid_alive, first)), 3,
               message='check %s and its child killed' % (first,))
    assert time.monotonic() - started < 1.5
    record = worker.record('e')
    assert record['state'] == 'starting' and record['health'] == 'starting'


def test_an_exec_check_that_hangs_says_timeout(workdir, worker_of):
    worker = worker_of(actor(workdir, 'e', health=exec_check(
        workdir, 'echo checking; exec sleep 100', interval=1, timeout=0.3, on_unhealthy='none')))
    wait_until(lambda: worker.healthy_log() is not None and
               (worker.record('e') or {}).get('health_error'), 5, message='a check ended')
    assert worker.record('e')['health_error'] == 'timeout after 0.3 s'


def test_an_exec_check_failing_gives_its_first_line_as_the_reason(workdir, worker_of):
    flag = os.path.join(shared_dir(workdir), 'fail')
    worker = worker_of(actor(workdir, 'e', health=exec_check(
        workdir, 'if [ -e %s ]; then echo; echo "  database is down  "; echo more; exit 1; fi'
        % flag, retries=2, on_unhealthy='none')))
    worker.wait('e', state='running', health='healthy', timeout=5)
    touch(flag)
    record = worker.wait('e', health='unhealthy', timeout=5)
    assert record['health_error'] == 'database is down'
    code, lines = worker.status()
    assert code == EX_DEGRADED and 'unhealthy (database is down)' in lines['e']
    os.unlink(flag)
    worker.wait('e', health='healthy', timeout=5)


def test_an_exec_check_runs_as_the_process_does(workdir, worker_of):
    """User, group, cwd, env and umask of the process; every run."""
    out = os.path.join(shared_dir(workdir), 'ids')
    cwd = workdir.join('cwd')
    os.mkdir(cwd)
    nobody = pwd.getpwnam('nobody')
    worker = worker_of({
        'name': 'e', 'run': '/bin/sh', 'args': ['-c', 'exec sleep 100', workdir.marker_of('e')],
        'user': 'nobody', 'cwd': cwd, 'env': {'CHECKVAR': 'from env'}, 'umask': '027',
        'stop_timeout': 1,
        'health': exec_check(workdir, 'echo "$(id -u) $(id -g) $(pwd) $CHECKVAR $(umask)" >> %s'
                             % out, interval=0.2, timeout=0.2)})
    worker.wait('e', state='running', health='healthy', timeout=5)
    wait_until(lambda: os.path.exists(out) and len(open(out).readlines()) >= 3, 5)
    expected = '%d %d %s from env 0027' % (nobody.pw_uid, nobody.pw_gid, cwd)
    assert set(line.strip() for line in open(out)) == {expected}


def test_an_exec_check_never_outlives_its_process(workdir, worker_of):
    pids_file = os.path.join(shared_dir(workdir), 'checks')
    worker = worker_of(actor(workdir, 'e', health=exec_check(
        workdir, 'sleep 100 & echo $$ $! >> %s; wait' % pids_file,
        interval=2, timeout=0.5, start_period=30)))
    first = wait_until(lambda: worker.healthy_log() is not None and check_pids(pids_file),
                       5, message='the first check ran')[0]
    try:
        worker.edit()                                  # the process goes, mid-check
        worker.wait_log('e: removed')
        wait_until(lambda: not any(map(pid_alive, first)), 1.5,
                   message='check %s gone (its timeout is 0.5 s)' % (first,))
    finally:
        kill_all(first)


# ===================================================================== never healthy

def test_never_healthy_ends_in_backoff_not_in_a_loop(workdir, worker_of):
    port, starts = free_port(), workdir.join('starts')
    worker = worker_of(actor(workdir, 'sick', '--record', starts, stop_timeout=1,
                             health=tcp(port, start_period=0.5)))
    record = worker.wait('sick', state='backoff', timeout=15)
    assert len(events(starts, 'start')) == 5          # the first start and four restarts
    assert record['restarts'] == 4 and record['pid'] is None
    assert 40 < record['next_start'] - record['since'] <= 60.5
    assert worker.log().count('sick: unhealthy: not ready after 0.5 s; restarting it') == 5
    assert 'sick: started 5 times in 60 s' in worker.log()
    code, lines = worker.status()
    assert code == EX_DEGRADED and 'BACKOFF' in lines['sick']
    stays(lambda: len(events(starts, 'start')) == 5, 1.0, 'no start while in backoff')


def test_a_process_that_dies_before_it_is_ready_is_restarted_at_once(workdir, worker_of):
    starts = workdir.join('starts')
    worker = worker_of(actor(workdir, 'n', '--record', starts, '--exit-after', 0.2,
                             '--exit-code', 3, notify=True))
    try:
        worker.wait_log('n: exited with status 3', timeout=3)
        wait_until(lambda: len(events(starts, 'start')) >= 2, 3, message='started again')
    except AssertionError:
        worker.daemon.kill9()     # a stop would wait stop_timeout and KILL_GRACE for a dead pid
        raise


# ===================================================================== notify

def test_notify_ready_late_then_running_and_status_text_shown(workdir, worker_of):
    go = workdir.join('go')
    worker = worker_of(actor(workdir, 'n', '--when', go, '--ready-after', 0.5,
                             '--status', 'Serving 0 clients', notify=True))
    record = worker.wait('n', state='starting')
    pid = record['pid']
    assert record['health'] is None                  # no check: no health, only readiness
    code, lines = worker.status()
    assert code == EX_DEGRADED and 'STARTING' in lines['n']
    env = environ(pid)
    prefix = '@diprocd/'
    assert env['NOTIFY_SOCKET'].startswith(prefix) and env['NOTIFY_SOCKET'].endswith('/n')
    assert 'WATCHDOG_USEC' not in env
    touch(go)
    asked = time.monotonic()
    record = worker.wait('n', state='running', status_text='Serving 0 clients')
    assert record['pid'] == pid and time.monotonic() - asked >= 0.5
    code, lines = worker.status()
    assert code == 0 and 'Serving 0 clients' in lines['n']
    worker.wait_log('n: ready')
    os.kill(pid, signal.SIGUSR1)                      # STATUS= once running
    worker.wait('n', status_text='usr1 #1')
    assert 'usr1 #1' in worker.status()[1]['n']


def test_a_missed_watchdog_makes_it_unhealthy_and_restarted(workdir, worker_of):
    worker = worker_of(actor(workdir, 'w', '--ready-after', 0, '--beats', 6, '--every', 0.1,
                             notify=True, watchdog=0.5))
    first = worker.wait('w', state='running')['pid']
    assert environ(first)['WATCHDOG_USEC'] == '500000'
    worker.wait_log('w: unhealthy: no WATCHDOG=1 for 0.5 s; restarting it')
    record = worker.wait('w', state='running', restarts=1)
    assert record['pid'] != first and not pid_alive(first)


def test_the_watchdog_counts_from_ready(workdir, worker_of):
    worker = worker_of(actor(workdir, 'w', '--ready-after', 1.0, '--beats', 1000, '--every',
                             0.1, notify=True, watchdog=0.5))
    worker.wait_log('w: ready', timeout=3)
    pid = worker.record('w')['pid']
    stays(lambda: 'unhealthy' not in worker.log() and worker.record('w')['pid'] == pid, 1.0,
          'a process that sends WATCHDOG=1 every 0.1 s is healthy:\n%s' % worker.log())


def test_sd_notify_from_a_foreign_process_is_ignored_from_a_grandchild_heard(workdir,
                                                                             worker_of):
    go = workdir.join('go')
    worker = worker_of(actor(workdir, 'n', '--when', go, '--ready-after', 0,
                             '--ready-from-grandchild', '--status', 'from the grandchild',
                             notify=True))
    pid = worker.wait('n', state='starting')['pid']
    address = environ(pid)['NOTIFY_SOCKET']
    send_notify(address, 'READY=1\nSTATUS=forged')
    worker.wait_log('n: ignored sd_notify from pid %d, which is not in its tree' % os.getpid())
    stays(lambda: worker.record('n')['state'] == 'starting', 0.3, 'a foreign READY=1 counts')
    assert worker.record('n')['status_text'] is None
    touch(go)
    record = worker.wait('n', state='running', status_text='from the grandchild')
    assert record['pid'] == pid
    [child] = children(pid)
    assert children(child), 'the READY=1 came from a grandchild, which still runs'


def test_a_program_using_systemd_notify_works_unchanged(workdir, worker_of):
    """systemd's own client (systemd-notify --ready, which waits on a barrier)."""
    if not os.access('/usr/bin/systemd-notify', os.X_OK):
        pytest.skip('/usr/bin/systemd-notify is missing (package systemd)')
    worker = worker_of({'name': 's', 'run': '/bin/sh', 'user': 'nobody', 'notify': True,
                        'stop_timeout': 1,
                        'args': ['-c', 'systemd-notify --ready --status="up, said systemd-notify"'
                                 '; exec sleep 100', workdir.marker_of('s')]})
    worker.wait('s', state='running', status_text='up, said systemd-notify', timeout=10)


def test_a_notify_process_with_the_longest_name_allowed_starts(workdir, worker_of):
    name = 'n' * 128
    worker = worker_of(actor(workdir, name, '--ready-after', 0.1, notify=True))
    wait_until(lambda: (worker.record(name) or {}).get('state') in ('running', 'failed'), 5)
    assert worker.record(name)['state'] == 'running', worker.record(name)['error']


def test_a_forking_daemon_that_notifies_at_once_is_ready(workdir, worker_of):
    """Its READY=1 comes from its own cgroup, before its pid file names it."""
    pid_file = workdir.join('d.pid')
    worker = worker_of(actor(workdir, 'd', '--daemonize', pid_file, '--ready-after', 0,
                             '--status', 'daemon up', notify=True, daemon=True,
                             pid_file=pid_file, write_pid=False))
    worker.wait('d', state='running', status_text='daemon up', timeout=2)


# ===================================================================== depends

def chain(workdir, record, *extra, **keys):
    """c depends on b, b on a; the file lists the dependents first; each notifies
    0.3 s after it starts and records its start, READY=1 and TERM."""
    def one(name, *depends):
        return actor(workdir, name, '--record', record, '--ready-after', 0.3, *extra,
                     notify=True, depends=list(depends), stop_timeout=2, **keys)
    return [one('c', 'b'), one('b', 'a'), one('a')]


def order(path, what):
    return [r[1] for r in events(path, what)]


def test_a_depends_chain_starts_in_order_and_stops_in_reverse(workdir, worker_of):
    log = workdir.join('events')
    worker = worker_of(*chain(workdir, log))
    record = worker.wait('c', state='waiting')
    assert record['waiting_for'] == ['b'] and record['pid'] is None
    code, lines = worker.status()
    assert code == EX_DEGRADED and 'WAITING' in lines['c'] and 'waiting for b' in lines['c']
    for name in 'abc':
        worker.wait(name, state='running')
    assert [(r[0], r[1]) for r in records(log)] == [
        ('start', 'a'), ('ready', 'a'), ('start', 'b'), ('ready', 'b'), ('start', 'c'),
        ('ready', 'c')]
    at = {(r[0], r[1]): r[3] for r in records(log)}
    assert at['start', 'b'] - at['ready', 'a'] < 1.0, 'b starts as soon as a is ready'
    assert worker.status()[0] == 0
    # a dependency that restarts does not restart its dependents
    pids = {name: worker.record(name)['pid'] for name in 'abc'}
    os.kill(pids['a'], signal.SIGKILL)
    record = worker.wait('a', state='running', restarts=1)
    assert record['pid'] != pids['a']
    assert {n: worker.record(n)['pid'] for n in 'bc'} == {n: pids[n] for n in 'bc'}
    assert order(log, 'start') == ['a', 'b', 'c', 'a']
    assert worker.stop() == 0
    assert order(log, 'term') == ['c', 'b', 'a']
    stops = {r[1]: r[3] for r in events(log, 'term')}
    assert stops['c'] < stops['b'] < stops['a']


def test_removal_and_an_empty_list_stop_dependents_first(workdir, worker_of):
    log = workdir.join('events')

    def plain(name, *depends):
        return actor(workdir, name, '--record', log, depends=list(depends), stop_timeout=2)
    c, b, a = plain('c', 'b'), plain('b', 'a'), plain('a')
    y, x = plain('y', 'x'), plain('x')
    worker = worker_of(c, b, a, y, x)
    for name in 'abcxy':
        worker.wait(name, state='running')
    wait_until(lambda: len(events(log, 'start')) == 5, message='each one listens to TERM')
    pid_a = worker.record('a')['pid']
    worker.edit(a, y, x)                               # b and c go together
    worker.wait_log('b: removed')
    assert order(log, 'term') == ['c', 'b']
    assert worker.record('a')['pid'] == pid_a and pid_alive(pid_a)
    worker.edit()                                      # []
    for name in 'axy':
        worker.wait_log('%s: removed' % name)
    terms = order(log, 'term')
    assert sorted(terms[2:]) == ['a', 'x', 'y'] and terms.index('y') < terms.index('x')
    assert worker.doc()['procs'] == []


def test_a_one_shot_that_fails_leaves_its_dependent_waiting(workdir, worker_of):
    """Through a worker restart (SPEC 3.3: a one-shot does not run again on the
    same boot), the recorded exit of the one-shot decides."""
    log = workdir.join('events')
    migrate = actor(workdir, 'migrate', '--record', log, '--exit-after', 0, '--exit-code', 1,
                    restart=False)
    worker = worker_of(migrate)
    worker.wait('migrate', state='exited')
    worker.stop()
    app = actor(workdir, 'app', '--record', log, depends=['migrate'])
    again = worker_of(migrate, app)
    record = again.wait('app', state='waiting')
    assert record['waiting_for'] == ['migrate']
    code, lines = again.status()
    assert code == EX_DEGRADED and 'waiting for migrate' in lines['app']
    assert order(log, 'start') == ['migrate']


def test_a_one_shot_migration_gates_its_dependent(workdir, worker_of):
    log, go = workdir.join('events'), workdir.join('go')
    worker = worker_of(
        actor(workdir, 'app', '--record', log, depends=['migrate']),
        actor(workdir, 'migrate', '--record', log, '--when', go, '--exit-after', 0,
              restart=False),
        actor(workdir, 'app2', '--record', log, depends=['migrate2']),
        actor(workdir, 'migrate2', '--record', log, '--when', go, '--exit-after', 0,
              '--exit-code', 1, restart=False))
    worker.wait('migrate', state='running')
    stays(lambda: worker.record('app')['state'] == 'waiting', 0.5,
          'app waits while the migration runs')
    touch(go)
    worker.wait('migrate', state='exited')
    worker.wait('app', state='running')
    worker.wait('migrate2', state='exited')
    assert worker.record('app2')['state'] == 'waiting'
    code, lines = worker.status()
    assert code == EX_DEGRADED and 'waiting for migrate2' in lines['app2']
    assert 'app2' not in order(log, 'start')


# ===================================================================== rejected files

def test_a_cycle_or_an_unknown_name_rejects_the_file_at_the_json_path(workdir, worker_of):
    bad = workdir.join('bad.json')
    write_json(bad, {'procs': [
        {'name': 'web', 'run': '/bin/sleep', 'depends': ['app']},
        {'name': 'app', 'run': '/bin/sleep', 'depends': ['db']},
        {'name': 'db', 'run': '/bin/sleep', 'depends': ['web', 'cach']},
        {'name': 'cache', 'run': '/bin/sleep'}]})
    code, _, err = run('dpd-workerd', '-t', bad)
    assert code == EX_CONFIG
    assert 'procs[2] ("db").depends: unknown process "cach" (did you mean "cache"?)' in err
    assert 'procs[0] ("web").depends: cycle web -> app -> db -> web' in err
    # a live edit: rejected whole, the old processes keep running
    a, b = actor(workdir, 'a'), actor(workdir, 'b', depends=['a'])
    worker = worker_of(a, b)
    pids = {n: worker.wait(n, state='running')['pid'] for n in 'ab'}
    worker.edit(dict(a, depends=['b']), b, actor(workdir, 'c'))
    worker.wait_log('procs[0] ("a").depends: cycle a -> b -> a')
    worker.wait_log('configuration rejected; the 2 running processes are left as they are')
    wait_until(lambda: worker.doc()['config']['ok'] is False)
    assert worker.doc()['config']['errors'] == [
        '%s: procs[0] ("a").depends: cycle a -> b -> a' % worker.config]
    assert {n: worker.record(n)['pid'] for n in 'ab'} == pids and worker.record('c') is None
    assert all(pid_alive(p) for p in pids.values())
    code, _ = worker.status()
    assert code == EX_DEGRADED


def test_the_master_checks_node_lists_with_the_same_rules(workdir):
    master = workdir.join('master.json')
    write_json(master, {'master_stats': 'tcp://127.0.0.1:%d' % free_port(),
                        'master_updates': 'tcp://127.0.0.1:%d' % free_port(),
                        'nodes': {'n1': [{'name': 'a', 'run': '/bin/sleep', 'depends': ['b']},
                                         {'name': 'b', 'run': '/bin/sleep', 'depends': ['a']}],
                                  'n2': [{'name': 'x', 'run': '/bin/sleep', 'notify': True,
                                          'health': {'tcp': '127.0.0.1:1'}}]}})
    code, _, err = run('dpd-masterd', '-t', master)
    assert code == EX_CONFIG
    assert 'nodes["n1"][0] ("a").depends: cycle a -> b -> a' in err
    assert 'n2' not in err


def test_bad_new_keys_are_all_reported_by_check_and_good_ones_pass(workdir):
    bad = workdir.join('bad.json')
    write_json(bad, {'procs': [
        {'name': 'a', 'run': '/bin/sleep', 'notify': 1, 'watchdog': -1},
        {'name': 'b', 'run': '/bin/sleep', 'watchdog': 3},
        {'name': 'c', 'run': '/bin/sleep', 'health': {'tcp': '127.0.0.1:80', 'exec': ['/x']}},
        {'name': 'd', 'run': '/bin/sleep', 'health': {'tcp': '127.0.0.1:70000', 'retries': 0,
                                                      'on_unhealthy': 'boom'}},
        {'name': 'e', 'run': '/bin/sleep', 'health': {'http': 'ftp://x/', 'interval': 1,
                                                      'timeout': 2}},
        {'name': 'f', 'run': '/bin/sleep', 'depends': 'a'}]})
    code, _, err = run('dpd-workerd', '-t', bad)
    assert code == EX_CONFIG
    for message in (
            'procs[0] ("a").notify: must be true or false, not a number',
            'procs[0] ("a").watchdog: must be between 0.1 and 86400, not -1',
            'procs[1] ("b").watchdog: needs "notify": true',
            'procs[2] ("c").health: needs exactly one probe: "exec", "tcp" or "http" ("exec", '
            '"tcp" given)',
            'procs[3] ("d").health.tcp: has port 70000, not 1-65535',
            'procs[3] ("d").health.retries: must be an integer from 1 to 1000, not 0',
            'procs[3] ("d").health.on_unhealthy: must be "restart" or "none", not "boom"',
            'procs[4] ("e").health.http: must be "http://HOST:PORT/PATH"',
            'procs[4] ("e").health.timeout: must be at most interval (1 s), not 2 s',
            'procs[5] ("f").depends: must be a list, not a string'):
        assert message in err, err
    good = workdir.join('good.json')
    write_json(good, {'procs': [
        {'name': 'db', 'run': '/bin/sleep', 'notify': True, 'watchdog': 10,
         'health': {'tcp': '127.0.0.1:5432', 'interval': 5, 'start_period': 60}},
        {'name': 'web', 'run': '/bin/sleep', 'depends': ['db', 'migrate'],
         'health': {'http': 'http://localhost:8080/health', 'on_unhealthy': 'none'}},
        {'name': 'migrate', 'run': '/bin/true', 'restart': False, 'depends': ['db'],
         'health': {'exec': ['/bin/true'], 'retries': 1, 'timeout': 1}}]})
    assert run('dpd-workerd', '-t', good)[0] == 0


def test_a_host_no_resolver_takes_rejects_the_file_and_a_live_edit_keeps_the_worker(
        workdir, worker_of):
    """"a..b" passed `-t`, then getaddrinfo raised UnicodeError in the probes thread:
    the worker died, and again at every start."""
    empty_label = 'has host "a..b": an empty label; each part between dots must be 1-63 ' \
                  'characters'
    bad = workdir.join('bad.json')
    write_json(bad, {'procs': [
        {'name': 'a', 'run': '/bin/sleep', 'health': {'tcp': 'a..b:80'}},
        {'name': 'b', 'run': '/bin/sleep', 'health': {'http': 'http://%s:80/' % ('x' * 64)}}]})
    code, _, err = run('dpd-workerd', '-t', bad)
    assert code == EX_CONFIG
    assert '%s: procs[0] ("a").health.tcp: %s' % (bad, empty_label) in err, err
    assert '%s: procs[1] ("b").health.http: has host "%s": a label of 64 characters' \
        % (bad, 'x' * 64) in err, err
    t = actor(workdir, 't')
    worker = worker_of(t)
    pid = worker.wait('t', state='running')['pid']
    worker.edit(dict(t, health={'tcp': 'a..b:80', 'interval': 0.2}))
    wait_until(lambda: worker.doc()['config']['ok'] is False, message=worker.log)
    assert worker.doc()['config']['errors'] == [
        '%s: procs[0] ("t").health.tcp: %s' % (worker.config, empty_label)]
    assert worker.daemon.proc.poll() is None and worker.record('t')['pid'] == pid
    assert pid_alive(pid)


# ===================================================================== a flood of sd_notify

FLOOD = """
import socket, sys
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
while True:
    sock.sendto(b'STATUS=flood', b'\\0' + sys.argv[1].encode())
"""


@contextlib.contextmanager
def flooding(address, senders=2):
    """Processes sending sd_notify datagrams to the abstract `address` as fast as
    its socket takes them (each blocks while the queue is full: it stays full)."""
    floods = [subprocess.Popen([PYTHON, '-c', FLOOD, address[1:]])
              for _ in range(senders)]
    try:
        yield [flood.pid for flood in floods]
    finally:
        for flood in floods:
            flood.kill()
            flood.wait()


def test_a_flood_on_one_notify_socket_starves_no_other_process(workdir, worker_of):
    """Anyone may send to a process's abstract NOTIFY_SOCKET. The probes thread read a
    socket until it was empty, so while one was flooded, another process's WATCHDOG=1
    waited unread and that process was restarted as unhealthy."""
    watched = actor(workdir, 'w', '--ready-after', 0, '--beats', 100000, '--every', 0.1,
                    notify=True, watchdog=0.5)
    worker = worker_of(watched, actor(workdir, 'target', '--ready-after', 0, notify=True))
    pid = worker.wait('w', state='running')['pid']
    address = environ(worker.wait('target', state='running')['pid'])['NOTIFY_SOCKET']
    with flooding(address):
        worker.wait_log('target: ignored sd_notify from pid ')
        stays(lambda: 'unhealthy' not in worker.log(), 2.0,
              'w sends WATCHDOG=1 every 0.1 s; it went unheard')
    assert worker.wait('w', state='running', restarts=0)['pid'] == pid


# ===================================================================== adoption

def test_adopted_processes_keep_their_health_their_checks_and_their_notify_socket(
        workdir, worker_of):
    port = free_port()
    checked = actor(workdir, 't', '--listen', port,
                    health=tcp(port, retries=1, on_unhealthy='none'))
    notified = actor(workdir, 'n', '--ready-after', 0.1, '--status', 'first words', notify=True)
    first = worker_of(checked, notified)
    pids = {'t': first.wait('t', state='running', health='healthy')['pid'],
            'n': first.wait('n', state='running', status_text='first words')['pid']}
    first.daemon.kill9()
    second = worker_of(checked, notified)
    for name in 'tn':
        second.wait_log('%s: adopted (pid %d)' % (name, pids[name]))
    assert second.wait('t', state='running', health='healthy')['pid'] == pids['t']
    assert second.wait('n', state='running')['pid'] == pids['n']
    assert second.record('n')['restarts'] == 0 and second.record('t')['restarts'] == 0
    assert 'not ready yet' not in second.log()
    # checks resume in the new worker...
    os.kill(pids['t'], signal.SIGUSR2)
    second.wait('t', health='unhealthy')
    os.kill(pids['t'], signal.SIGHUP)
    second.wait('t', health='healthy')
    # ...and the process's sd_notify reaches it
    os.kill(pids['n'], signal.SIGUSR1)
    second.wait('n', status_text='usr1 #1')
    assert 'usr1 #1' in second.status()[1]['n']
    assert all(pid_alive(p) for p in pids.values())


# ===================================================================== a real daemon

def test_redis_server_speaks_sd_notify_and_passes_a_tcp_check(workdir, worker_of):
    if not os.access(REDIS, os.X_OK):
        pytest.skip('%s is missing (Debian package redis-server)' % REDIS)
    port = free_port()
    home = workdir.join('redis')
    os.mkdir(home)
    os.chmod(home, 0o777)
    worker = worker_of({
        'name': 'redis', 'run': REDIS, 'user': 'nobody', 'cwd': home, 'notify': True,
        'stop_timeout': 5, 'logs': workdir.join('redis.log'),
        'args': ['--supervised', 'systemd', '--port', str(port), '--bind', '127.0.0.1',
                 '--save', '', '--appendonly', 'no', '--daemonize', 'no',
                 '--dir', home],
        'health': {'tcp': '127.0.0.1:%d' % port, 'interval': 0.5, 'start_period': 10}})
    record = worker.wait('redis', state='running', health='healthy', timeout=10)
    pid = record['pid']
    worker.wait_log('redis: ready')
    with socket.create_connection(('127.0.0.1', port), timeout=5) as conn:
        conn.sendall(b'PING\r\n')
        assert conn.recv(64).startswith(b'+PONG')
    code, lines = worker.status()
    assert code == 0 and 'healthy' in lines['redis']
    assert worker.stop() == 0
    assert not pid_alive(pid)
    assert 'redis: stopped' in worker.log()
