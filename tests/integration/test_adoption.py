"""SPEC 3.5: the worker dies, its processes do not; the next worker adopts them."""
import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

from support import (IS_ROOT, REPO, Daemon, command, pid_alive, pids_with, read_json,
                     read_pid, run, wait_until, write_json)


def five_processes(workdir):
    """A chatty writer, a daemon, a finished restart:false one, two plain ones."""
    return [
        workdir.actor('chatty', 'chatty', 0, 0.0005, logs=workdir.join('chatty.log'),
                      pid_file=workdir.join('chatty.pid')),
        workdir.actor('daemon', 'daemonize', workdir.join('daemon.pid'), daemon=True,
                      pid_file=workdir.join('daemon.pid'), write_pid=False),
        workdir.actor('once', 'exit', 0, restart=False),
        workdir.actor('plain1', 'sleep', pid_file=workdir.join('plain1.pid'),
                      logs=workdir.join('plain1.log')),
        workdir.actor('plain2', 'sleep'),
    ]


def states(workdir):
    try:
        doc = read_json(workdir.join('worker.state.json'))
    except (OSError, ValueError):
        return {}
    return {p['name']: p for p in doc['procs']}


def settled(workdir):
    """{name: pid} once every process is as desired, else None."""
    current = states(workdir)
    if len(current) != 5 or current['once']['state'] != 'exited':
        return None
    if any(current[n]['state'] != 'running' for n in current if n != 'once'):
        return None
    return {n: current[n]['pid'] for n in current if n != 'once'}


def instances(workdir, name):
    return pids_with(workdir.marker_of(name))


def check_chatty_log(path):
    with open(path) as f:
        lines = f.read().split('\n')
    assert lines[-1] == '', 'the log ends with a whole line'
    numbers = [int(line) for line in lines[:-1]]
    assert numbers == list(range(len(numbers))), 'no line missing or duplicated'
    return len(numbers)


def test_ten_kill9_cycles_change_no_pid_and_lose_no_line(workdir):
    config = workdir.join('worker.json')
    write_json(config, {'procs': five_processes(workdir)})
    worker = Daemon('dpd-workerd', config).start()
    pids = wait_until(lambda: settled(workdir))
    lines_before = 0
    for cycle in range(10):
        worker.kill9()
        assert all(pid_alive(pid) for pid in pids.values()), 'they outlive the worker'
        worker = Daemon('dpd-workerd', config).start()
        worker.wait_log('chatty: adopted (pid %d)' % pids['chatty'])
        assert settled(workdir) == pids, 'cycle %d: same pids' % cycle
        for name, pid in pids.items():
            assert instances(workdir, name) == [pid], 'cycle %d: one %s' % (cycle, name)
        assert instances(workdir, 'once') == [], 'a finished restart:false process stays done'
        assert ': running (pid' not in worker.log(), 'nothing was started'
        # the chatty log grows on, every line exactly once
        wait_until(lambda: os.path.getsize(workdir.join('chatty.log')) > lines_before * 9 + 900)
        lines_before = check_chatty_log(workdir.join('chatty.log'))
    # a kill of an adopted process is followed by a restart
    os.kill(pids['plain1'], signal.SIGKILL)
    new = wait_until(lambda: (read_pid(workdir.join('plain1.pid')) or pids['plain1'])
                     != pids['plain1'] and read_pid(workdir.join('plain1.pid')))
    assert instances(workdir, 'plain1') == [new]
    os.kill(pids['daemon'], signal.SIGKILL)
    wait_until(lambda: states(workdir).get('daemon', {}).get('pid') not in (None, pids['daemon'])
               and states(workdir)['daemon']['state'] == 'running')
    assert len(instances(workdir, 'daemon')) == 1
    worker.stop()
    check_chatty_log(workdir.join('chatty.log'))
    assert pids_with(workdir.marker) == []


def test_output_written_while_no_worker_runs_reaches_the_log(workdir):
    config = workdir.join('worker.json')
    log = workdir.join('slow.log')
    write_json(config, {'procs': [workdir.actor('slow', 'chatty', 0, 0.002, logs=log)]})
    worker = Daemon('dpd-workerd', config).start()
    wait_until(lambda: os.path.getsize(log) > 100)
    worker.kill9()
    size = os.path.getsize(log)
    marker = workdir.join('marker')
    with open(marker, 'w'):
        pass
    # nobody reads the FIFO now; the writer goes on into its buffer
    wait_until(lambda: _fifo_holds_data(workdir, 'slow'), message='output waits in the FIFO')
    assert os.path.getsize(log) == size
    worker = Daemon('dpd-workerd', config).start()
    wait_until(lambda: os.path.getsize(log) > size + 2000)
    worker.stop()
    check_chatty_log(log)


def _fifo_holds_data(workdir, name):
    import fcntl
    import termios
    fifo = workdir.join('worker.state.fifos', name + '.fifo')
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        buf = bytearray(4)
        fcntl.ioctl(fd, termios.FIONREAD, buf)
        return int.from_bytes(buf, sys.byteorder) > 1000
    finally:
        os.close(fd)


def test_edits_made_while_the_worker_was_down_are_applied_on_start(workdir):
    config = workdir.join('worker.json')
    procs = {n: workdir.actor(n, 'sleep', pid_file=workdir.join(n + '.pid')) for n in 'ABD'}
    write_json(config, {'procs': list(procs.values())})
    worker = Daemon('dpd-workerd', config).start()
    before = {n: wait_until(lambda n=n: read_pid(workdir.join(n + '.pid'))) for n in 'ABD'}
    worker.kill9()
    changed = dict(procs['B'], env={'V': '2'})
    added = workdir.actor('C', 'sleep', pid_file=workdir.join('C.pid'))
    write_json(config, {'procs': [changed, added, procs['D']]})   # A removed
    worker = Daemon('dpd-workerd', config).start()
    try:
        wait_until(lambda: not pid_alive(before['A']), message='removed A stopped')
        wait_until(lambda: read_pid(workdir.join('C.pid')), message='added C started')
        wait_until(lambda: (read_pid(workdir.join('B.pid')) or before['B']) != before['B'],
                   message='changed B restarted')
        assert not pid_alive(before['B'])
        assert read_pid(workdir.join('D.pid')) == before['D'] and pid_alive(before['D'])
        assert instances(workdir, 'D') == [before['D']]
        assert len(instances(workdir, 'B')) == 1
    finally:
        worker.stop()


def test_quit_leaves_processes_running_and_term_stops_them(workdir):
    config = workdir.join('worker.json')
    write_json(config, {'procs': [workdir.actor('a', 'sleep', pid_file=workdir.join('a.pid'))]})
    worker = Daemon('dpd-workerd', config).start()
    pid = wait_until(lambda: read_pid(workdir.join('a.pid')))
    worker.signal(signal.SIGQUIT)
    assert worker.wait() == 0
    assert pid_alive(pid) and instances(workdir, 'a') == [pid]
    assert 'leaving 1 processes running' in worker.log()
    status, _, _ = run('dpd-ctl', 'status', config)
    assert status == 3
    worker = Daemon('dpd-workerd', config).start()
    worker.wait_log('a: adopted (pid %d)' % pid)
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0
    assert not pid_alive(pid) and instances(workdir, 'a') == []


def test_a_process_that_died_while_the_worker_was_down_is_started_again(workdir):
    config = workdir.join('worker.json')
    write_json(config, {'procs': [workdir.actor('a', 'sleep', pid_file=workdir.join('a.pid'))]})
    worker = Daemon('dpd-workerd', config).start()
    pid = wait_until(lambda: read_pid(workdir.join('a.pid')))
    worker.kill9()
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not pid_alive(pid))
    worker = Daemon('dpd-workerd', config).start()
    try:
        new = wait_until(lambda: (read_pid(workdir.join('a.pid')) or pid) != pid
                         and read_pid(workdir.join('a.pid')))
        assert instances(workdir, 'a') == [new]
    finally:
        worker.stop()


SCENARIO = r'''
import json, os, signal, subprocess, sys, time
sys.path.insert(0, sys.argv[2])
from support import Daemon, pid_alive, read_pid, wait_until, write_json, pids_with
work = sys.argv[1]
config = os.path.join(work, 'worker.json')
app = {'name': 'app', 'run': '/bin/sleep', 'args': ['1001'], 'user': 'root',
       'pid_file': os.path.join(work, 'app.pid')}
write_json(config, {'procs': [app]})
worker = Daemon('dpd-workerd', config).start()
old = wait_until(lambda: read_pid(app['pid_file']))
worker.kill9()
os.kill(old, signal.SIGKILL)
os.waitpid(old, 0)          # we are pid 1 of this namespace: the orphan is ours to reap
with open('/proc/sys/kernel/ns_last_pid', 'w') as f:
    f.write(str(old - 1))
impostor = subprocess.Popen(['/bin/sleep', '1002'])
worker = Daemon('dpd-workerd', config).start()
new = wait_until(lambda: (read_pid(app['pid_file']) or old) != old and read_pid(app['pid_file']),
                 message=lambda: 'a fresh app; worker log:\n' + worker.log())
log = worker.log()
alive = pid_alive(impostor.pid)
worker.stop()
impostor_after_stop = pid_alive(impostor.pid)
impostor.kill()
print(json.dumps({'old': old, 'impostor': impostor.pid, 'new': new, 'alive': alive,
                  'alive_after_stop': impostor_after_stop,
                  'adopted': 'adopted' in log}))
'''


@pytest.mark.skipif(not IS_ROOT or not shutil.which('unshare'), reason='needs root and unshare')
def test_a_recycled_pid_is_never_adopted_nor_signalled(workdir):
    script = workdir.join('scenario.py')
    with open(script, 'w') as f:
        f.write(SCENARIO)
    env = dict(os.environ, PATH=os.path.dirname(command('dpd-workerd')[0]) + ':' +
               os.environ.get('PATH', ''))
    done = subprocess.run(['unshare', '--pid', '--fork', '--mount-proc', sys.executable, script,
                           workdir.path, os.path.join(REPO, 'tests')],
                          capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result['impostor'] == result['old'], 'the test took over the old pid'
    assert result['new'] != result['old'], 'the configured process was started fresh'
    assert result['alive'] and result['alive_after_stop'], 'the foreign process was untouched'
    assert not result['adopted']
