"""Operators' commands with a real dpd-workerd and real dpd-ctl runs (SPEC 6.3):
restart (from every state, answered once ready), signal (the main pid, or --all
the whole group), logs (-n, -f across rotation, with no worker), the control
socket's rules (mode 0600, SO_PEERCRED, a stale socket replaced), exit statuses.

Most tests share one worker (module scope): each uses its own processes, or
leaves the ones it uses as it found them (running, paused).
"""
import contextlib
import glob
import json
import queue
import os
import select
import shutil
import signal
import socket
import stat
import subprocess
import threading
import time

import pytest

import conftest
from dpd import acceptpause, control
from support import (IS_ROOT, PYTHON, REPO, TIMEOUT, Daemon, OutOfDescriptors, WorkerSite,
                     Workdir, answer_lines, command, pid_alive, read_pid, wait_until,
                     write_json)

ACTOR = os.path.join(REPO, 'tests', 'actor.py')
READINESS_ACTOR = os.path.join(REPO, 'tests', 'readiness_actor.py')
NOBODY = 65534
EX_OK, EX_FAILED, EX_USAGE, EX_NOT_RUNNING = 0, 1, 2, 3

# A writer whose pace the test sets: a line "NNNNNNNN xxx..." every 10 ms, except
# while PAUSE exists; then it says the number of its next line in PAUSED.
WRITER = '''
import os, sys, time
pause, paused = sys.argv[1], sys.argv[2]
i = 0
while True:
    if not os.path.exists(pause):
        print("%08d %s" % (i, "x" * 60), flush=True)
        i += 1
    elif not os.path.exists(paused):
        with open(paused + ".tmp", "w") as f:
            f.write(str(i))
        os.rename(paused + ".tmp", paused)
    time.sleep(0.01)
'''

# A shell whose HUP is only written down, with a grandchild in its process group.
FAMILY = ('trap "echo HUP >> {hup}" HUP; {python} {actor} sleep {marker}-grand & '
          'echo $! > {grand}; while kill -0 $! 2>/dev/null; do wait; done')


def user():
    import pwd
    return 'root' if IS_ROOT else pwd.getpwuid(os.geteuid()).pw_name


def entry(work, name, run_, *args, **keys):
    """A PROCESS found later by its marker (its last argument)."""
    return dict({'name': name, 'run': run_, 'args': list(args) + [work.marker_of(name)],
                 'user': user(), 'stop_timeout': 2}, **keys)


def remove_cgroups(work):
    """A worker killed or QUIT leaves its (empty) cgroups for the next one: remove them."""
    tag = os.path.basename(work.path)
    for top in glob.glob('/sys/fs/cgroup/*/diprocd') + glob.glob('/sys/fs/cgroup/diprocd'):
        for instance in glob.glob(os.path.join(top, '*%s*' % tag)):
            for path, _, _ in os.walk(instance, topdown=False):
                with contextlib.suppress(OSError):
                    os.rmdir(path)


class Site(WorkerSite):
    """One dpd-workerd on WORK/worker.json, its state and its control socket."""

    def __init__(self, work, *procs):
        super().__init__(work, *procs)
        self.work, self.worker = work, self.daemon
        self.socket = work.join('worker.sock')

    def wait_state(self, name, state, timeout=TIMEOUT, other_than=None):
        """The record of `name` once in `state` (with a pid other than `other_than`)."""
        def reached():
            record = self.record(name)
            return record if record and record['state'] == state and \
                (other_than is None or record['pid'] != other_than) else None
        return wait_until(reached, timeout, message=lambda: '%s to be %s: %r\n%s' % (
            name, state, self.record(name), self.worker.log()[-3000:]))

    def wait_record(self, name, predicate, what):
        def reached():
            record = self.record(name)
            return record if record and predicate(record) else None
        return wait_until(reached, message=lambda: '%s: %s: %r' % (name, what, self.record(name)))

    def ctl(self, verb, *args, timeout=TIMEOUT, prefix=()):
        return ctl(self.config, verb, *args, timeout=timeout, prefix=prefix)


def ctl(config, verb, *args, timeout=TIMEOUT, prefix=()):
    """dpd-ctl VERB -c CONFIG ARGS...: (status, stdout, stderr)."""
    done = subprocess.run(list(prefix) + command('dpd-ctl') + [verb, '-c', config] + list(args),
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, cwd='/')
    return done.returncode, done.stdout, done.stderr


def same_times(a, b):
    """Two lists of times from the state file (wall clock, from monotonic at each write)."""
    return len(a) == len(b) and all(abs(x - y) < 0.01 for x, y in zip(a, b))


# ===================================================================== the shared worker

SHARED = set()          # the shared worker's pid: no leak between this module's tests


@pytest.fixture(autouse=True)
def no_leaks():
    """conftest's no_leaks, except for the module's shared worker (it lives across tests)."""
    threads_before = set(threading.enumerate())
    yield

    def leaked():
        return [pid for pid in conftest._orphans() if pid not in SHARED]
    found, deadline = leaked(), time.monotonic() + 2.0
    while found and time.monotonic() < deadline:
        time.sleep(0.02)
        conftest._reap_orphans()
        found = leaked()
    for pid in found:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    conftest._reap_orphans()
    extra = [t for t in threading.enumerate() if t not in threads_before and t.is_alive()]
    assert not extra, 'threads left running: %r' % extra
    assert not found, 'processes left running (now killed): %r' % found


class Shared(Site):
    def __init__(self, work):
        self.talker_log = work.join('talker.log')
        self.chatty_log = work.join('chatty.log')
        self.pause_file, self.paused_file = work.join('talker.pause'), work.join('talker.paused')
        self.record_file = work.join('ready.record')
        self.hup_file, self.grand_file = work.join('family.hup'), work.join('family.grand')
        open(self.pause_file, 'w').close()              # the talker starts paused
        super().__init__(
            work,
            work.actor('plain', 'sleep', stop_timeout=2),
            work.actor('other', 'sleep', stop_timeout=2),
            work.actor('oneshot', 'exit', 0, restart=False),
            work.actor('crashy', 'exit', 3),
            entry(work, 'ready', PYTHON, READINESS_ACTOR, '--name', 'ready', '--ready-after',
                  '0.3', '--record', self.record_file, notify=True),
            entry(work, 'family', '/bin/sh', '-c', FAMILY.format(
                hup=self.hup_file, grand=self.grand_file, python=PYTHON, actor=ACTOR,
                marker=work.marker_of('family'))),
            entry(work, 'talker', PYTHON, '-c', WRITER, self.pause_file, self.paused_file,
                  logs=self.talker_log),
            work.actor('chatty', 'chatty', 50, logs=self.chatty_log),
            entry(work, 'launchfail', '/bin/sh', '-c', 'exit 1', daemon=True,
                  pid_file=work.join('launchfail.pid'), write_pid=False),
            {'name': 'broken', 'run': work.join('no-such-program'), 'user': user()})

    # the talker's pace
    def pause(self):
        """Stop the talker; once it stopped and its last line is in the file, the
        number of its next line."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.paused_file)
        if not os.path.exists(self.pause_file):
            open(self.pause_file, 'w').close()
        after = int(wait_until(lambda: read_text(self.paused_file)))
        if after:
            wait_until(lambda: ('%08d ' % (after - 1)).encode() in read_bytes(self.talker_log),
                       message='line %d in %s' % (after - 1, self.talker_log))
        return after

    def resume(self):
        os.unlink(self.pause_file)


def read_text(path):
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ''


def read_bytes(path):
    try:
        with open(path, 'rb') as f:
            return f.read()
    except FileNotFoundError:
        return b''


@pytest.fixture(scope='module')
def site():
    work = Workdir()
    made = Shared(work)
    try:
        made.start()
        SHARED.add(made.worker.pid)
        yield made
        assert 'Traceback' not in made.worker.log(), made.worker.log()[-4000:]
    finally:
        made.worker.stop()
        SHARED.discard(made.worker.pid)
        work.cleanup()


def pid_of(site, name, state='running'):
    return site.wait_state(name, state)['pid']


# ===================================================================== restart

def test_restart_of_a_running_process_gives_a_new_pid_uncounted(site):
    first = site.wait_state('plain', 'running')
    old = first['pid']
    for i in range(6):                               # more than the restart limit allows
        status, out, err = site.ctl('restart', 'plain')
        assert status == EX_OK, err
        record = site.wait_state('plain', 'running', other_than=old)
        assert out == 'plain: restarted, ready (pid %d)\n' % record['pid']
        assert not pid_alive(old)
        old = record['pid']
    assert same_times(record['starts'], first['starts']), 'operators\' restarts do not count'
    assert record['restarts'] == first['restarts'] + 6
    assert 'dpd-ctl restart plain (uid %d)' % os.geteuid() in site.worker.log()


def test_restart_of_an_exited_process(site):
    before = site.wait_state('oneshot', 'exited')
    ended = site.worker.log().count('oneshot: exited with status 0')
    status, out, err = site.ctl('restart', 'oneshot')
    assert status == EX_OK, err
    assert out.startswith('oneshot: restarted, ready (pid ')
    site.worker.wait_log('oneshot: exited with status 0', count=ended + 1)   # it ran again
    site.wait_record('oneshot', lambda r: r['state'] == 'exited' and
                     r['restarts'] == before['restarts'] + 1, 'exited once more')


def test_restart_of_a_process_in_backoff_is_not_counted(site):
    before = site.wait_state('crashy', 'backoff')
    assert len(before['starts']) == 5
    status, out, err = site.ctl('restart', 'crashy')
    assert status == EX_OK, err
    pid = int(out.split('(pid ')[1].rstrip(')\n'))
    after = site.wait_record('crashy', lambda r: r['state'] == 'backoff' and
                             r['restarts'] == before['restarts'] + 1, 'back in backoff')
    assert after['last_exit']['code'] == 3
    assert same_times(after['starts'], before['starts']), 'the restart did not count (and ' \
        'its crash found no room)'
    assert 'crashy: running (pid %d)' % pid in site.worker.log()


def test_restart_of_a_failed_process_says_why_it_cannot_start(site):
    site.wait_state('broken', 'failed')
    status, out, err = site.ctl('restart', 'broken')
    assert status == EX_FAILED and out == ''
    assert err == 'dpd-ctl: broken: cannot start: cannot run %s: No such file or directory\n' \
        % site.work.join('no-such-program')


def test_restart_of_a_notify_process_returns_once_it_sent_ready(site):
    old = pid_of(site, 'ready')
    started = time.monotonic()
    status, out, err = site.ctl('restart', 'ready')
    elapsed = time.monotonic() - started
    assert status == EX_OK, err
    pid = int(out.split('(pid ')[1].rstrip(')\n'))
    assert pid != old and elapsed >= 0.3
    # the child writes "ready" just before READY=1: it is there when dpd-ctl returns
    assert 'ready ready %d ' % pid in read_text(site.record_file)
    assert site.record('ready')['pid'] == pid


def test_restart_of_a_daemon_whose_launcher_fails_exits_1_with_the_reason(site):
    site.wait_state('launchfail', 'backoff')
    status, out, err = site.ctl('restart', 'launchfail')
    assert status == EX_FAILED and out == ''
    assert err == 'dpd-ctl: launchfail: ended before it was ready (status 1)\n'


def test_one_unknown_name_and_nothing_is_restarted(site):
    plain, other = pid_of(site, 'plain'), pid_of(site, 'other')
    status, out, err = site.ctl('restart', 'plain', 'zz', 'other')
    assert status == EX_FAILED and out == ''
    assert err == 'dpd-ctl: no process zz\n'
    status, out, err = site.ctl('signal', 'TERM', 'other', 'zz')
    assert status == EX_FAILED and err == 'dpd-ctl: no process zz\n'
    assert (site.record('plain')['pid'], site.record('other')['pid']) == (plain, other)
    assert pid_alive(plain) and pid_alive(other)


def test_json_output(site):
    status, out, err = site.ctl('restart', '--json', 'other')
    assert status == EX_OK, err
    answer = json.loads(out)
    pid = site.wait_state('other', 'running')['pid']
    assert answer == {'ok': True, 'code': 0, 'done': True,
                      'results': [{'name': 'other', 'pid': pid}]}
    status, out, _ = site.ctl('restart', '--json', 'nope')
    assert status == EX_FAILED
    assert json.loads(out) == {'ok': False, 'code': 1, 'error': 'no process nope', 'done': True}


# ===================================================================== signal

def test_signal_goes_to_the_main_pid_only_or_with_all_to_the_whole_group(site):
    main = pid_of(site, 'family')
    grandchild = wait_until(lambda: read_pid(site.grand_file))
    status, out, err = site.ctl('signal', 'hup', 'family')
    assert status == EX_OK, err
    assert out == 'family: sent SIGHUP to pid %d\n' % main
    wait_until(lambda: 'HUP' in read_text(site.hup_file), message='HUP reached the shell')
    assert pid_alive(main) and pid_alive(grandchild), 'the grandchild got nothing'
    assert site.record('family')['pid'] == main

    status, out, err = site.ctl('signal', '--all', 'SIGTERM', 'family')
    assert status == EX_OK, err
    assert out == 'family: sent SIGTERM to every process of family (pid %d)\n' % main
    wait_until(lambda: not pid_alive(grandchild), message='TERM reached the grandchild')
    site.wait_state('family', 'running', other_than=main)      # and it is back


def test_unknown_signal_is_a_usage_error(site):
    pid = pid_of(site, 'plain')
    for name in ('NOPE', 'SIG_DFL', '0'):
        status, out, err = site.ctl('signal', name, 'plain')
        assert status == EX_USAGE and out == ''
        assert 'unknown signal' in err
    assert site.record('plain')['pid'] == pid and pid_alive(pid)


def test_signal_to_a_process_that_is_not_running_is_refused(site):
    site.wait_state('oneshot', 'exited')
    plain = pid_of(site, 'plain')
    status, out, err = site.ctl('signal', 'TERM', 'plain', 'oneshot')
    assert status == EX_FAILED and out == ''
    assert err == 'dpd-ctl: oneshot is not running (exited)\n'
    assert pid_alive(plain) and site.record('plain')['pid'] == plain


# ===================================================================== logs

def test_logs_n(site):
    wait_until(lambda: read_bytes(site.chatty_log).count(b'\n') == 50)
    status, out, err = site.ctl('logs', '-n', '3', 'chatty')
    assert (status, out, err) == (EX_OK, '00000047\n00000048\n00000049\n', '')
    status, out, _ = site.ctl('logs', 'chatty')
    assert out == ''.join('%08d\n' % i for i in range(40, 50))
    status, out, _ = site.ctl('logs', '-n', '0', 'chatty')
    assert (status, out) == (EX_OK, '')
    status, out, _ = site.ctl('logs', '-n', '1000', 'chatty')
    assert out == ''.join('%08d\n' % i for i in range(50))
    status, _, err = site.ctl('logs', '-n', '-1', 'chatty')
    assert status == EX_USAGE and '-n' in err
    status, _, err = site.ctl('logs', 'plain')
    assert status == EX_FAILED and 'process plain has no "logs" file' in err


class Follow:
    """`dpd-ctl logs -f -n 1 talker`, read as it prints, under deadlines."""

    def __init__(self, site):
        self.site = site
        self.proc = subprocess.Popen(command('dpd-ctl') + ['logs', '-c', site.config, '-f',
                                                           '-n', '1', 'talker'],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, cwd='/')
        self.data = b''

    def numbers(self):
        return [int(line.split()[0]) for line in self.data.split(b'\n')[:-1]]

    def wait_for(self, number, timeout=TIMEOUT):
        """Read until line `number` came."""
        deadline = time.monotonic() + timeout
        while number not in self.numbers():
            left = deadline - time.monotonic()
            assert left > 0 and self.proc.poll() is None, \
                'line %d never came; got %r\n%s' % (number, self.numbers()[-20:],
                                                     self.proc.stderr.read1() if self.proc.poll()
                                                     is not None else '')
            if select.select([self.proc.stdout], [], [], left)[0]:
                self.data += os.read(self.proc.stdout.fileno(), 65536)

    def offset(self, path):
        """The offset of dpd-ctl's open file `path` (None if it has none open)."""
        fds = '/proc/%d/fd' % self.proc.pid
        for fd in os.listdir(fds):
            with contextlib.suppress(OSError):
                if os.readlink(os.path.join(fds, fd)) == path:
                    with open('/proc/%d/fdinfo/%s' % (self.proc.pid, fd)) as f:
                        return int(f.readline().split()[1])
        return None

    def close(self):
        """Interrupted as an operator does (^C): exit 0."""
        self.proc.send_signal(signal.SIGINT)
        status = self.proc.wait(TIMEOUT)
        self.proc.stdout.close()
        self.proc.stderr.close()
        return status


@contextlib.contextmanager
def following(site):
    """dpd-ctl logs -f on the talker, paused: its first line is the next one written."""
    start = site.pause()
    follow = Follow(site)
    follow.start = start
    try:
        wait_until(lambda: follow.offset(site.talker_log) is not None,
                   message='dpd-ctl follows %s' % site.talker_log)
        yield follow
    finally:
        status = follow.close()
        if not os.path.exists(site.pause_file):
            site.pause()
    assert status == EX_OK


def test_logs_follow_across_rename_and_create(site):
    """logrotate `create`: moved away, a new file made, then USR1 (the pump reopens
    before its next write)."""
    with following(site) as follow:
        site.resume()
        follow.wait_for(follow.start + 3)
        first = site.pause()
        follow.wait_for(first - 1)
        os.rename(site.talker_log, site.talker_log + '.1')
        fd = os.open(site.talker_log, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        os.close(fd)
        reopened = site.worker.log().count('USR1: log files reopened')
        site.worker.signal(signal.SIGUSR1)
        site.worker.wait_log('USR1: log files reopened', count=reopened + 1)
        site.resume()
        follow.wait_for(first + 5)
        last = site.pause()
        follow.wait_for(last - 1)
    numbers = follow.numbers()
    assert numbers == list(range(numbers[0], last)), 'every line once, in order'
    assert read_bytes(site.talker_log).startswith(b'%08d ' % first), 'the new file has the rest'


def test_logs_follow_across_copytruncate(site):
    with following(site) as follow:
        site.resume()
        follow.wait_for(follow.start + 3)
        first = site.pause()
        follow.wait_for(first - 1)
        shutil.copyfile(site.talker_log, site.talker_log + '.2')
        with open(site.talker_log, 'r+b') as f:
            f.truncate(0)
        wait_until(lambda: follow.offset(site.talker_log) == 0,
                   message='dpd-ctl saw the truncation')
        site.resume()
        follow.wait_for(first + 5)
        last = site.pause()
        follow.wait_for(last - 1)
    numbers = follow.numbers()
    assert numbers == list(range(numbers[0], last)), 'every line once, in order'
    assert read_bytes(site.talker_log).startswith(b'%08d ' % first)


def test_logs_with_no_worker_running(workdir):
    log = workdir.join('web.log')
    with open(log, 'w') as f:
        f.write('one\ntwo\nthree\n')
    write_json(workdir.join('worker.json'), {'procs': [
        {'name': 'web', 'run': '/bin/sleep', 'args': ['100'], 'logs': log},
        {'name': 'quiet', 'run': '/bin/sleep', 'args': ['100']}]})
    config = workdir.join('worker.json')
    assert ctl(config, 'logs', '-n', '2', 'web') == (EX_OK, 'two\nthree\n', '')
    status, out, err = ctl(config, 'logs', 'zz')
    assert status == EX_FAILED and 'no process zz' in err
    status, out, err = ctl(config, 'logs', 'quiet')
    assert status == EX_FAILED and 'process quiet has no "logs" file' in err
    for args in (('restart', 'web'), ('signal', 'HUP', 'web')):
        status, out, err = ctl(config, *args)
        assert status == EX_NOT_RUNNING and out == ''
        assert 'dpd-workerd is not running for %s' % config in err


HOSTILE = b'\x1b]0;title\x07\x1b[2J'


class OnTerminal:
    """dpd-ctl with its output on a pseudo-terminal, as an operator sees it."""

    def __init__(self, *args):
        master, slave = os.openpty()
        self.master, self.data = master, b''
        self.proc = subprocess.Popen(command('dpd-ctl') + list(args), stdout=slave,
                                     stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, cwd='/')
        os.close(slave)

    def read_until(self, expected, timeout=TIMEOUT):
        """What it printed (the terminal's \r\n made \n), once `expected` is in it, or
        it closed the terminal."""
        deadline = time.monotonic() + timeout
        while expected not in self.data:
            left = deadline - time.monotonic()
            assert left > 0, 'never printed %r; got %r' % (expected, self.data)
            if select.select([self.master], [], [], left)[0]:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:             # EIO: it closed the terminal
                    chunk = b''
                if not chunk:
                    break
                self.data += chunk.replace(b'\r\n', b'\n')
        return self.data

    def close(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        status = self.proc.wait(TIMEOUT)
        self.proc.stderr.close()
        os.close(self.master)
        return status


def test_logs_here_escape_control_characters_on_a_terminal(workdir):
    """A process's output may be anyone's: `dpd-ctl logs` printed its escape sequences
    (a new window title, a cleared screen) raw to the operator's terminal."""
    log = workdir.join('web.log')
    with open(log, 'wb') as f:
        f.write(b'one' + HOSTILE + b'\ttwo\n')
    config = workdir.join('worker.json')
    write_json(config, {'procs': [{'name': 'web', 'run': '/bin/sleep', 'logs': log}]})
    shown = b'one\\x1b]0;title\\x07\\x1b[2J\ttwo\n'
    terminal = OnTerminal('logs', '-c', config, 'web')
    try:
        assert terminal.read_until(shown + b'END') == shown
    finally:
        assert terminal.close() == EX_OK
    terminal = OnTerminal('logs', '-c', config, '-f', 'web')
    try:
        terminal.read_until(shown)
        with open(log, 'ab') as f:
            f.write(b'three' + HOSTILE + b'\n')
        assert terminal.read_until(b'three\\x1b]0;title\\x07\\x1b[2J\n') == \
            shown + b'three\\x1b]0;title\\x07\\x1b[2J\n'
    finally:
        assert terminal.close() == EX_OK
    assert ctl(config, 'logs', 'web')[1] == (b'one' + HOSTILE + b'\ttwo\nthree' + HOSTILE +
                                             b'\n').decode(), 'into a pipe: as written'


def test_logs_here_follow_no_link(workdir):
    """The log swapped for a link to a secret: `dpd-ctl logs` (as root) printed it."""
    secret = workdir.join('shadow')
    with open(secret, 'w') as f:
        f.write('root:$6$secret:19000:0:99999:7:::\n')
    os.chmod(secret, 0o600)
    log = workdir.join('web.log')
    os.symlink(secret, log)
    config = workdir.join('worker.json')
    write_json(config, {'procs': [{'name': 'web', 'run': '/bin/sleep', 'logs': log}]})
    for follow in ((), ('-f',)):
        status, out, err = ctl(config, 'logs', *follow, 'web')
        assert (status, out) == (EX_FAILED, ''), out
        assert err == 'dpd-ctl: %s: refused: it is a symbolic link\n' % log


# ===================================================================== the socket

def test_the_control_socket_is_mode_0600(site):
    info = os.lstat(site.socket)
    assert stat.S_ISSOCK(info.st_mode)
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert info.st_uid == os.geteuid()


# ------------------------------------------------------------ the control thread alone

@pytest.fixture
def server(workdir):
    """A ControlServer thread and the facts it posts."""
    facts = queue.SimpleQueue()
    made = control.ControlServer(workdir.join('c.sock'), facts.put, workdir.join('c.json'))
    made.facts = facts
    made.start()
    yield made
    made.stop()


def asked(server, request):
    """A connection to `server` that sent `request`, and the number it was given
    (a reader that reads nothing until told: its receive buffer small)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(server.path)
    sock.sendall(json.dumps(request).encode() + b'\n')
    fact = server.facts.get(timeout=TIMEOUT)
    assert fact.request == request
    return sock, fact.number


def test_answers_a_slow_reader_leaves_are_bounded_then_its_connection_ends(server):
    """A relay's answers come as fast as its node sends them: with dpd-ctl paused (a
    pager) they piled up in the master without end (26 -> 957 MiB in 2 minutes).
    Beyond MAX_PENDING the connection ends with an error, and is posted as gone
    (the master's policy cancels the relay on the node)."""
    sock, number = asked(server, {'command': 'logs', 'names': ['a'], 'node': 'web1'})
    with sock:
        piece = {'ok': True, 'code': 0, 'text': 'x' * (1 << 20)}
        for _ in range(32):
            server.answer(number, piece, done=False)
        assert server.facts.get(timeout=TIMEOUT) == control.CommandGone(number)
        server.answer(number, {'ok': True, 'code': 0}, done=True)     # too late: dropped
        answers = answer_lines(sock)
    *pieces, last = answers
    assert 2 <= len(pieces) <= control.MAX_PENDING >> 20
    assert all(answer == dict(piece, done=False) for answer in pieces)
    assert last == {'ok': False, 'code': 1, 'done': True, 'error': 'answers came faster than '
                    'dpd-ctl read them (4 MiB waited to be read): stopped'}


def test_a_backlog_goes_in_pieces_its_readers_take_at_1_mib_a_second(server, workdir):
    """A backlog of 16 MiB went in one line; the client reads at most 4 MiB a line
    (and the master takes 1 MiB an ANSWER): nothing came through the master. In
    pieces all at once, it overflowed the client's queue to the master (which
    drops what does not fit): it goes as a followed log does."""
    path = workdir.join('big.log')
    lines = ['%05d %s\n' % (i, '\u00e9\x01' * 12500) for i in range(60)]    # 9 MB as JSON
    with open(path, 'w') as f:
        f.write(''.join(lines))
    sock, number = asked(server, {'command': 'logs', 'names': ['a']})
    with sock:
        started = time.monotonic()
        server.stream(number, path, 10000, follow=False)
        answers = answer_lines(sock)
        took = time.monotonic() - started
    assert [a['done'] for a in answers] == [False] * (len(answers) - 1) + [True]
    assert all(len(a['text']) <= control.STREAM_PIECE for a in answers) and len(answers) > 20
    assert ''.join(a['text'] for a in answers) == ''.join(lines)
    assert took >= 1.0, '1.5 M characters: 128 KiB at once, then 1 MiB/s'


def as_nobody():
    return ['setpriv', '--reuid=%d' % NOBODY, '--regid=%d' % NOBODY, '--clear-groups', '--']


@pytest.mark.skipif(not IS_ROOT or not shutil.which('setpriv'),
                    reason='needs root and setpriv (dpd-ctl run as nobody)')
def test_a_user_not_allowed_is_refused(site):
    plain = pid_of(site, 'plain')
    status, out, err = site.ctl('restart', 'plain', prefix=as_nobody())
    assert status == EX_FAILED and out == ''
    assert err == 'dpd-ctl: cannot use %s: Permission denied\n' % site.socket
    # past the file's mode (as if it were open to all): the kernel's word on the peer
    os.chmod(site.socket, 0o666)
    try:
        status, out, err = site.ctl('restart', 'plain', prefix=as_nobody())
    finally:
        os.chmod(site.socket, 0o600)
    assert status == EX_FAILED and out == ''
    assert err == 'dpd-ctl: uid %d may not use %s\n' % (NOBODY, site.socket)
    assert site.record('plain')['pid'] == plain and pid_alive(plain)


def test_a_stale_socket_of_a_killed_worker_is_replaced(workdir):
    site = Site(workdir, workdir.actor('a', 'sleep', stop_timeout=2)).start()
    try:
        old = pid_of(site, 'a')
        site.worker.kill9()
        assert stat.S_ISSOCK(os.lstat(site.socket).st_mode), 'left behind'
        status, _, err = site.ctl('restart', 'a')
        assert status == EX_NOT_RUNNING and 'is not running' in err
        site.start()                                 # adopts `a`, listens again
        status, out, err = site.ctl('restart', 'a')
        assert status == EX_OK, err + site.worker.log()
        assert site.wait_state('a', 'running', other_than=old)
    finally:
        site.worker.stop()
        remove_cgroups(workdir)


def socket_rule(others):
    """(owner, mode) the socket gets when the config's owner and the daemon's user are
    root, us and `others`: the one user who is not root owns it, 0600; 0666 for two."""
    users = ({0, os.geteuid()} | set(others)) - {0}
    owner = next(iter(users)) if IS_ROOT and len(users) == 1 else os.geteuid()
    return owner, 0o600 if len(users) <= 1 else 0o666


# Before the fix the socket was bound at its final path, then chowned and chmodded by
# that path: whoever may write its directory (the config's owner) could put a link there
# in between, and root gave the link's target to that owner, mode 0600. Here the racer
# always wins: the link goes in right after bind().
def test_a_link_put_in_place_of_the_new_socket_is_replaced_never_followed(workdir,
                                                                          monkeypatch):
    precious, path = workdir.join('precious'), workdir.join('w.sock')
    with open(precious, 'w') as f:
        f.write('precious\n')
    os.chmod(precious, 0o644)
    real_bind = socket.socket.bind

    def bind_then_race(sock, address):
        real_bind(sock, address)
        os.symlink(precious, path + '.link')
        os.rename(path + '.link', path)
    monkeypatch.setattr(socket.socket, 'bind', bind_then_race)
    listener = control._listen(path, {0, os.geteuid(), NOBODY})
    monkeypatch.undo()
    try:
        info = os.lstat(precious)
        assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (os.geteuid(), 0o644)
        info = os.lstat(path)
        assert stat.S_ISSOCK(info.st_mode), 'the link was replaced by the socket'
        assert (info.st_uid, stat.S_IMODE(info.st_mode)) == socket_rule([NOBODY])
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(path)
            listener.accept()[0].close()
        assert sorted(os.listdir(workdir.path)) == ['precious', 'w.sock'], 'nothing left'
    finally:
        listener.close()


@pytest.mark.parametrize('others', [(), (NOBODY,), (NOBODY, NOBODY - 1)],
                         ids=['root', 'one user', 'two users'])
def test_the_socket_is_chowned_and_chmodded_only_inside_its_private_directory(
        workdir, monkeypatch, others):
    calls = []

    def spy(name, real):
        def called(*args, **keys):
            calls.append((name, args, keys))
            return real(*args, **keys)
        return called
    for name in ('chown', 'chmod'):
        monkeypatch.setattr(os, name, spy(name, getattr(os, name)))
    path = workdir.join('w.sock')
    listener = control._listen(path, {0, os.geteuid()} | set(others))
    monkeypatch.undo()
    try:
        owner, _ = socket_rule(others)
        assert [c[0] for c in calls] == (['chown'] if IS_ROOT and owner else []) + ['chmod']
        for name, args, keys in calls:
            assert keys.get('dir_fd') is not None, (name, args, keys)
            assert name != 'chown' or keys.get('follow_symlinks') is False, (args, keys)
        info = os.lstat(path)
        assert stat.S_ISSOCK(info.st_mode)
        assert (info.st_uid, stat.S_IMODE(info.st_mode)) == socket_rule(others)
    finally:
        listener.close()


# A config owned by another user, in their own directory: the socket is theirs, 0600.
# A link they leave at its name before the start is refused, never followed (a rule
# kept from before the fix: only a stale socket is replaced at start).
@pytest.mark.skipif(not IS_ROOT or not shutil.which('setpriv'),
                    reason='needs root and setpriv (a config of nobody, dpd-ctl as nobody)')
def test_the_socket_of_a_config_another_user_owns_is_theirs(workdir):
    home = workdir.join('home')
    os.mkdir(home)
    os.chown(home, NOBODY, NOBODY)
    config, path = os.path.join(home, 'w.json'), os.path.join(home, 'w.sock')
    write_json(config, {'procs': []}, mode=0o600)
    os.chown(config, NOBODY, NOBODY)
    precious = workdir.join('precious')
    with open(precious, 'w') as f:
        f.write('precious\n')
    os.symlink(precious, path)
    extra = ['--policy', workdir.policy()]
    worker = Daemon('dpd-workerd', config, extra).start()
    try:
        worker.wait_log('no control socket (dpd-ctl restart, signal, logs): %s: %s exists '
                        'and is not a socket' % (path, path), timeout=5)
    finally:
        worker.stop()
    info = os.lstat(precious)
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (0, 0o644)
    os.unlink(path)
    worker = Daemon('dpd-workerd', config, extra).start()
    try:
        info = os.lstat(path)
        assert stat.S_ISSOCK(info.st_mode)
        assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (NOBODY, 0o600)
        assert not glob.glob(os.path.join(home, '.dpd-sock-*')), 'its private directory went'
        status, out, err = ctl(config, 'restart', 'x', prefix=as_nobody())
        assert (status, out, err) == (EX_FAILED, '', 'dpd-ctl: no process x\n')
    finally:
        worker.stop()


# ===================================================================== dies before ready

def test_a_restarted_notify_process_that_dies_before_ready_exits_1_with_the_reason(workdir):
    flag = workdir.join('die')
    script = 'if [ -e %s ]; then exit 3; fi; exec %s %s --ready-after 0 "$0"' % (
        flag, PYTHON, READINESS_ACTOR)
    site = Site(workdir, entry(workdir, 'flaky', '/bin/sh', '-c', script, notify=True,
                               stop_timeout=1)).start()
    try:
        site.wait_state('flaky', 'running')
        open(flag, 'w').close()
        status, out, err = site.ctl('restart', 'flaky', timeout=2)
        assert status == EX_FAILED
        assert err == 'dpd-ctl: flaky: ended before it was ready (status 3)\n'
    finally:
        site.worker.signal(signal.SIGQUIT)          # quick: its dead `starting` child is
        site.worker.wait()                          # not waited for
        remove_cgroups(workdir)


def test_out_of_descriptors_the_listener_rests_and_the_thread_lives(server, monkeypatch):
    """The connection waits in the kernel's queue, the listener stays readable: a
    failed accept() once ended the thread (and the master with it)."""
    monkeypatch.setattr(acceptpause, 'REST_SECONDS', 0.3)
    listener = server._listener = OutOfDescriptors(server._listener)
    request = {'command': 'restart', 'names': ['a']}
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(server.path)
        sock.sendall(json.dumps(request).encode() + b'\n')
        wait_until(lambda: listener.calls >= 1)
        time.sleep(0.5)             # the time a spinning thread makes thousands of calls
        assert listener.calls <= 3 and server.is_alive(), listener.calls
        listener.failing = False
        assert server.facts.get(timeout=TIMEOUT).request == request
