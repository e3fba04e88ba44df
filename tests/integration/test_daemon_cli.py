"""What every daemon promises at the command line (SPEC 1), shown on dpd-workerd."""
import os
import signal
import socket
import subprocess

import pytest

from support import (Daemon, command, pid_alive, pids_with, read_pid, run, wait_until,
                     write_json)


def test_version_and_help_go_to_stdout():
    status, out, err = run('dpd-workerd', '--version')
    assert status == 0 and out.startswith('dpd-workerd (diprocd) ') and not err
    status, out, err = run('dpd-workerd', '--help')
    assert status == 0 and '--foreground' in out and '--check' in out and not err


def test_usage_error_exits_2():
    status, _, err = run('dpd-workerd')
    assert status == 2 and 'CONFIG' in err


def test_check_accepts_the_examples():
    for name in ('diprocd-worker.example.json', 'diprocd-emptyworker.example.json',
                 'diprocd-services.example.json'):
        status, out, _ = run('dpd-workerd', '-t', os.path.join('examples', name))
        assert status == 0, out
        assert 'test is successful' in out


def test_check_prints_every_problem_and_exits_78(workdir):
    config = workdir.join('worker.json')
    write_json(config, {'procs': [{'name': 'a', 'run': 'sleep'},
                                  {'name': 'b', 'run': '/bin/sleep', 'restart': 'no'}],
                        'extra': 1})
    status, _, err = run('dpd-workerd', '-t', config)
    assert status == 78
    assert 'unknown key "extra"' in err
    assert 'procs[0] ("a").run: must be an absolute path' in err
    assert 'procs[1] ("b").restart: must be true or false, not a string' in err
    assert config in err


def test_invalid_config_at_start_exits_78_before_detaching(workdir):
    config = workdir.join('worker.json')
    with open(config, 'w') as f:
        f.write('{"procs": [}')
    status, _, err = run('dpd-workerd', config)
    assert status == 78 and 'invalid JSON' in err and 'line 1 column 12' in err


def test_second_start_exits_0_quietly_and_the_lock_decides(workdir):
    config = workdir.join('worker.json')
    write_json(config, {'procs': [workdir.actor('a', 'sleep')]})
    first = Daemon('dpd-workerd', config).start()
    try:
        status, out, err = run('dpd-workerd', '-f', config)
        assert (status, out, err) == (0, '', '')
        status, _, err = run('dpd-workerd', '-v', config)
        assert status == 0 and 'already running' in err
        assert len(pids_with(workdir.marker)) == 1
    finally:
        first.stop()


@pytest.mark.skipif(os.path.exists('/dev/log'), reason='this host has syslog (/dev/log): '
                    'the warning is for hosts without one')
def test_detached_without_log_file_or_syslog_says_its_messages_go_nowhere(workdir):
    config = workdir.join('worker.json')
    pid_file = workdir.join('worker.pid')
    write_json(config, {'pid_file': pid_file, 'procs': []})
    status, out, err = run('dpd-workerd', config)
    daemon = read_pid(pid_file)
    try:
        assert status == 0 and daemon and pid_alive(daemon)
        assert 'no log_file and no syslog (/dev/log)' in err and config in err, err
    finally:
        os.kill(daemon, signal.SIGTERM)
        wait_until(lambda: not pid_alive(daemon))


def test_detached_start_returns_when_ready_and_writes_its_pid(workdir):
    config = workdir.join('worker.json')
    pid_file = workdir.join('worker.pid')
    write_json(config, {'pid_file': pid_file, 'log_file': workdir.join('worker.log'),
                        'procs': [workdir.actor('a', 'sleep', pid_file=workdir.join('a.pid'))]})
    status, out, err = run('dpd-workerd', config)
    assert (status, out, err) == (0, '', '')
    daemon = read_pid(pid_file)
    try:
        assert daemon and pid_alive(daemon)
        assert read_pid(workdir.join('a.pid')), 'ready means the processes were started'
        assert os.getsid(daemon) not in (daemon, os.getsid(0)), \
            'a new session it does not lead (double fork: no terminal can come back)'
        assert os.readlink('/proc/%d/cwd' % daemon) == '/'
        with open(workdir.join('worker.log')) as f:
            assert 'ready (pid %d' % daemon in f.read()
    finally:
        os.kill(daemon, signal.SIGTERM)
        wait_until(lambda: not pid_alive(daemon))
    assert not os.path.exists(pid_file), 'removed at a clean exit'
    assert pids_with(workdir.marker) == []


def test_detached_start_that_fails_reports_the_error(workdir):
    config = workdir.join('worker.json')
    write_json(config, {'log_file': '/nonexistent-dir/sub/worker.log', 'procs': []})
    os.makedirs('/nonexistent-dir', exist_ok=True)
    try:
        os.chmod('/nonexistent-dir', 0o555)
        write_json(config, {'log_file': workdir.join('log-is-a-dir'), 'procs': []})
        os.mkdir(workdir.join('log-is-a-dir'))
        status, _, err = run('dpd-workerd', config)
        assert status == 1 and 'cannot open log file' in err
    finally:
        os.rmdir('/nonexistent-dir')


def test_ready_is_sent_to_notify_socket(workdir):
    address = workdir.join('notify.sock')
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(address)
    listener.settimeout(15)
    config = workdir.join('worker.json')
    write_json(config, {'procs': []})
    worker = Daemon('dpd-workerd', config, env=dict(os.environ, NOTIFY_SOCKET=address)).start()
    try:
        assert listener.recv(4096) == b'READY=1'
        worker.signal(signal.SIGTERM)
        assert listener.recv(4096) == b'STOPPING=1'
        assert worker.wait() == 0
    finally:
        worker.stop()
        listener.close()


def test_term_and_int_exit_0(workdir):
    config = workdir.join('worker.json')
    write_json(config, {'procs': [workdir.actor('a', 'sleep')]})
    for signum in (signal.SIGTERM, signal.SIGINT):
        worker = Daemon('dpd-workerd', config).start()
        wait_until(lambda: pids_with(workdir.marker))
        worker.signal(signum)
        assert worker.wait() == 0
        assert pids_with(workdir.marker) == []


def test_the_daemons_own_log_file_is_reopened_after_rotation(workdir):
    config = workdir.join('worker.json')
    log = workdir.join('worker.log')
    write_json(config, {'log_file': log, 'procs': []})
    worker = Daemon('dpd-workerd', config).start()
    try:
        os.rename(log, log + '.1')
        worker.signal(signal.SIGUSR1)
        wait_until(lambda: os.path.exists(log) and 'log files reopened' in open(log).read())
    finally:
        worker.stop()
    assert 'ready (pid' in open(log + '.1').read()


def test_foreground_logs_iso_timestamps(workdir):
    config = workdir.join('worker.json')
    write_json(config, {'procs': []})
    done = subprocess.run(command('dpd-workerd') + ['-f', config], capture_output=True,
                          text=True, timeout=15, input='',
                          preexec_fn=lambda: signal.alarm(2))
    first = done.stderr.splitlines()[0]
    stamp, level, program = first.split(' ')[:3]
    assert stamp[4] == '-' and stamp[10] == 'T' and stamp[-6] in '+-'
    assert level == 'INFO' and program.startswith('dpd-workerd[')
