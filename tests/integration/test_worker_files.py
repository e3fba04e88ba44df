"""dpd-workerd's files: child logs and their rotation, pid files, config edits."""
import os
import signal

from support import Daemon, pid_alive, read_json, read_pid, wait_until, write_json


def start_worker(workdir, *procs):
    config = workdir.join('worker.json')
    write_json(config, {'procs': list(procs)})
    return Daemon('dpd-workerd', config).start()


def text(path):
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ''


def numbered_lines(*paths):
    lines = []
    for path in paths:
        lines.extend(text(path).split())
    return lines


def test_output_is_appended_and_a_fast_writer_loses_nothing(workdir):
    log = workdir.join('chatty.log')
    with open(log, 'w') as f:
        f.write('before\n')
    worker = start_worker(workdir, workdir.actor('chatty', 'chatty', 200000, logs=log))
    try:
        wait_until(lambda: text(log).endswith('00199999\n'), timeout=30)
        lines = text(log).split('\n')
        assert lines[0] == 'before'
        assert lines[1:-1] == ['%08d' % i for i in range(200000)]
    finally:
        worker.stop()


def test_rename_rotation_and_usr1_reopen(workdir):
    log = workdir.join('slow.log')
    worker = start_worker(workdir, workdir.actor('slow', 'chatty', 0, 0.01, logs=log))
    try:
        wait_until(lambda: len(text(log).split()) > 5)
        os.rename(log, log + '.1')
        worker.signal(signal.SIGUSR1)
        worker.wait_log('USR1: log files reopened')
        wait_until(lambda: len(text(log).split()) > 5, message='new file written after USR1')
        os.rename(log, log + '.2')            # moved without a signal: noticed within 1 s
        wait_until(lambda: len(text(log).split()) > 5, message='new file after plain rename')
    finally:
        worker.stop()
    numbers = [int(n) for n in numbered_lines(log + '.1', log + '.2', log)]
    assert numbers == list(range(len(numbers))), 'every line exactly once, in order'


def test_deleted_log_is_recreated(workdir):
    log = workdir.join('slow.log')
    worker = start_worker(workdir, workdir.actor('slow', 'chatty', 0, 0.01, logs=log))
    try:
        wait_until(lambda: len(text(log).split()) > 3)
        os.unlink(log)
        wait_until(lambda: len(text(log).split()) > 3, message='log recreated after deletion')
    finally:
        worker.stop()


def test_copytruncate_leaves_no_hole(workdir):
    log = workdir.join('slow.log')
    worker = start_worker(workdir, workdir.actor('slow', 'chatty', 0, 0.005, logs=log))
    try:
        wait_until(lambda: len(text(log).split()) > 20)
        with open(log, 'r+') as f:
            f.truncate(0)
        wait_until(lambda: len(text(log).split()) > 5)
        info = os.stat(log)
        assert '\0' not in text(log)
        assert info.st_size <= info.st_blocks * 512 + 4096, 'not a sparse file'
    finally:
        worker.stop()


def test_pid_file_appears_and_disappears(workdir):
    pid_file = workdir.join('a.pid')
    worker = start_worker(workdir, workdir.actor('a', 'sleep', pid_file=pid_file))
    pid = wait_until(lambda: read_pid(pid_file))
    assert pid_alive(pid)
    with open(pid_file) as f:
        assert f.read() == '%d\n' % pid
    write_json(workdir.join('worker.json'), {'procs': []})
    wait_until(lambda: not os.path.exists(pid_file), message='pid file removed with the process')
    assert not pid_alive(pid)
    worker.stop()


def test_config_edited_in_place_and_replaced_by_rename(workdir):
    config = workdir.join('worker.json')
    worker = start_worker(workdir)
    try:
        with open(config, 'w') as f:  # in place, as an editor without backup files does
            f.write('{"procs": [%s]}' % _json(workdir.actor('inplace', 'sleep')))
        worker.wait_log('inplace: running')
        write_json(config, {'procs': [workdir.actor('renamed', 'sleep')]})
        worker.wait_log('renamed: running')
        worker.wait_log('inplace: removed')
    finally:
        worker.stop()


def _json(doc):
    import json
    return json.dumps(doc)


def test_bad_edit_is_rejected_whole_and_the_next_good_one_applied(workdir):
    config = workdir.join('worker.json')
    pid_file = workdir.join('a.pid')
    good = workdir.actor('a', 'sleep', pid_file=pid_file)
    worker = start_worker(workdir, good)
    try:
        pid = wait_until(lambda: read_pid(pid_file))
        bad = dict(good, resatrt=False)
        write_json(config, {'procs': [bad, workdir.actor('b', 'sleep')]})
        worker.wait_log('procs[0] ("a"): unknown key "resatrt" (did you mean "restart"?)')
        state = read_json(workdir.join('worker.state.json'))
        wait_until(lambda: not read_json(workdir.join('worker.state.json'))['config']['ok'])
        assert read_pid(pid_file) == pid and pid_alive(pid)
        assert 'b: running' not in worker.log()
        write_json(config, {'procs': [good, workdir.actor('b', 'sleep')]})
        worker.wait_log('b: running')
        assert read_pid(pid_file) == pid
        wait_until(lambda: read_json(workdir.join('worker.state.json'))['config']['ok'])
        assert state['schema'] == 1
    finally:
        worker.stop()


def test_hup_reloads(workdir):
    worker = start_worker(workdir, workdir.actor('a', 'sleep'))
    try:
        worker.wait_log('a: running')
        worker.signal(signal.SIGHUP)
        worker.wait_log('HUP: reloading the configuration')
        assert worker.log().count('a: running') == 1
    finally:
        worker.stop()
