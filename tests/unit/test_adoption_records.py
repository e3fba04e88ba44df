"""What a new worker takes from its predecessor's state file (SPEC 3.5)."""
import json
import os

from dpd import procfs
from dpd.worker import adoption
from dpd.worker.config import parse_worker
from dpd.worker.records import definition_record


def state_file(tmp_path, boot, records):
    path = tmp_path / 'w.state.json'
    path.write_text(json.dumps({'schema': 1, 'boot_id': boot, 'procs': records}))
    return str(path)


def record(name, state, pid=None, started=None, restart=True):
    spec = parse_worker({'procs': [{'name': name, 'run': '/bin/sleep', 'restart': restart}]},
                        '/w.json', 'nobody').procs[0]
    return {'name': name, 'state': state, 'pid': pid, 'started': started,
            'fingerprint': spec.fingerprint, 'definition': definition_record(spec),
            'starts': [], 'restarts': 0, 'since': None, 'last_exit': None}


def me():
    return os.getpid(), list(procfs.identity(os.getpid()))


def test_live_process_with_matching_start_time_is_adopted(tmp_path):
    pid, started = me()
    path = state_file(tmp_path, procfs.boot_id(), [record('a', 'running', pid, started)])
    previous = adoption.previous_run(path)
    assert [r['pid'] for r in previous.adopted] == [pid]


def test_pid_with_another_start_time_or_session_is_not_adopted(tmp_path):
    pid, (ticks, session) = me()
    for other in ([ticks + 1, session], [ticks, session + 1], ticks, None):
        path = state_file(tmp_path, procfs.boot_id(), [record('a', 'running', pid, other)])
        assert adoption.previous_run(path).adopted == ()


def test_after_a_reboot_nothing_is_adopted_and_finished_processes_run_again(tmp_path):
    pid, started = me()
    path = state_file(tmp_path, 'another-boot', [record('a', 'running', pid, started),
                                                 record('b', 'exited', restart=False)])
    previous = adoption.previous_run(path)
    assert previous.adopted == () and previous.finished == ()


def test_finished_restart_false_process_is_remembered_on_the_same_boot(tmp_path):
    path = state_file(tmp_path, procfs.boot_id(), [record('b', 'exited', restart=False),
                                                   record('c', 'exited', restart=True)])
    assert [r['name'] for r in adoption.previous_run(path).finished] == ['b']


def test_garbage_state_files_adopt_nothing(tmp_path):
    for text in ('', '[]', '{"schema": 1, "procs": "x"}', '{"schema": 2}', 'nope'):
        path = tmp_path / 'w.state.json'
        path.write_text(text)
        assert adoption.previous_run(str(path)).adopted == ()
    broken = record('a', 'running', *me())
    broken['definition'] = {'run': 5}
    path = state_file(tmp_path, procfs.boot_id(), [broken, {'name': 'x'}, 7])
    assert adoption.previous_run(path).adopted == ()
    assert adoption.previous_run(str(tmp_path / 'missing.json')).adopted == ()


def test_a_spawn_is_unconfirmed_until_a_start_of_its_name_follows():
    from dpd.worker.journal import unconfirmed_spawns
    a, b = 'a' * 16, 'b' * 16
    assert unconfirmed_spawns([]) == ()
    assert unconfirmed_spawns([{'name': 'x', 'spawning': a}]) == (a,)
    assert unconfirmed_spawns([{'name': 'x', 'spawning': a}, {'name': 'x', 'pid': 5}]) == ()
    # the start of another name confirms nothing; a later spawn of x replaces the earlier
    assert unconfirmed_spawns([{'name': 'x', 'spawning': a}, {'name': 'y', 'pid': 5},
                               {'name': 'x', 'pid': 6}, {'name': 'x', 'spawning': b}]) == (b,)
    # a mark that is not one of ours is never looked for
    assert unconfirmed_spawns([{'name': 'x', 'spawning': 'short'},
                               {'name': 'y', 'spawning': 7}]) == ()
