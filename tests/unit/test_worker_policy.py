"""The worker's decisions, driven by scripted facts and a fake clock."""
import signal

import pytest

from dpd.worker import actions as act
from dpd.worker import events as ev
from dpd.worker import lifecycle as lc
from dpd.worker.config import parse_worker
from dpd.worker.policy import WorkerPolicy
from worker_world import World, config, of, proc
from dpd.worker.records import definition_record


def test_new_processes_start():
    world = World(proc('a'), proc('b'))
    assert [s.name for s in of(act.Spawn, world.out)] == ['a', 'b']
    assert world.state('a') == world.state('b') == lc.RUNNING


def test_restart_at_once_then_backoff_after_five_starts_in_a_minute():
    world = World(proc('a'))
    for i in range(4):  # the first start counts: 4 more are allowed at once
        out = world.crash('a', 1.0 + i)
        assert of(act.Spawn, out), 'restart %d should be immediate' % i
    out = world.crash('a', 5.0)
    assert not of(act.Spawn, out)
    assert world.state('a') == lc.BACKOFF
    assert world.timer('a') == pytest.approx(60.0)  # first start + 60 s
    assert not of(act.Spawn, world.tick(59.9))
    assert of(act.Spawn, world.tick(60.0))
    assert world.state('a') == lc.RUNNING


def test_backoff_never_gives_up():
    world = World(proc('a'))
    now = 0.0
    for _ in range(30):
        now += 1.0
        world.crash('a', now)
        if world.state('a') == lc.BACKOFF:
            now = world.timer('a')
            world.tick(now)
        assert world.state('a') == lc.RUNNING
    assert world.policy.procs['a'].restarts == 30


def test_restart_false_goes_to_exited_and_stays():
    world = World(proc('a', restart=False))
    out = world.handle(ev.ProcessExited('a', world.pids['a'], 0, None), 3.0)
    assert not of(act.Spawn, out)
    assert world.state('a') == lc.EXITED
    assert world.timer('a') is None


def test_unchanged_edit_touches_nothing_and_changed_entry_restarts_alone():
    world = World(proc('a'), proc('b'))
    same = world.handle(ev.ConfigLoaded(config(proc('a'), proc('b'))), 1.0)
    assert not of(act.Spawn, same) and not of(act.SendSignal, same)
    edited = world.handle(ev.ConfigLoaded(config(proc('a'), proc('b', args=['200']))), 2.0)
    signals = of(act.SendSignal, edited)
    assert {s.name for s in signals} == {'b'}
    assert signals[0].signum == signal.SIGTERM and signals[0].group
    assert world.state('b') == lc.STOPPING and world.state('a') == lc.RUNNING
    # its group is gone once it exits; then the new definition starts
    out = world.handle(ev.ProcessExited('b', world.pids['b'], None, 15), 2.1)
    assert of(act.CheckGroup, out)
    out = world.handle(ev.GroupChecked('b', world.pids['b'], False), 2.1)
    assert [s.spec.args for s in of(act.Spawn, out)] == [('200',)]
    assert world.state('b') == lc.RUNNING


def test_removed_entry_is_stopped_then_forgotten():
    world = World(proc('a'), proc('b'))
    world.handle(ev.ConfigLoaded(config(proc('a'))), 1.0)
    assert world.state('b') == lc.STOPPING
    world.handle(ev.ProcessExited('b', world.pids['b'], 0, None), 1.5)
    out = world.handle(ev.GroupChecked('b', world.pids['b'], False), 1.5)
    assert 'b' not in world.policy.procs
    assert of(act.Forget, out)


def test_stop_timeout_sends_kill_to_the_group():
    world = World(proc('a', stop_timeout=3))
    world.handle(ev.ConfigLoaded(config()), 10.0)
    assert world.timer('a') == 13.0
    out = world.tick(13.0)
    kill = of(act.SendSignal, out)
    assert kill and kill[0].signum == signal.SIGKILL and kill[0].group


def test_leader_gone_but_group_alive_waits_then_kills():
    world = World(proc('a', stop_timeout=2))
    world.handle(ev.SignalReceived(signal.SIGTERM), 0.0)
    world.handle(ev.ProcessExited('a', world.pids['a'], None, 15), 0.5)
    world.handle(ev.GroupChecked('a', world.pids['a'], True), 0.5)
    assert world.state('a') == lc.STOPPING
    assert of(act.CheckGroup, world.tick(0.55))
    world.handle(ev.GroupChecked('a', world.pids['a'], True), 0.55)
    out = world.tick(2.0)
    assert [s.signum for s in of(act.SendSignal, out)] == [signal.SIGKILL]
    out = world.handle(ev.GroupChecked('a', world.pids['a'], False), 2.01)
    assert world.state('a') == lc.STOPPED
    assert of(act.Exit, out)


def test_term_stops_everything_in_parallel_and_exits_when_all_are_gone():
    world = World(proc('a'), proc('b'), proc('c', restart=False))
    world.handle(ev.ProcessExited('c', world.pids['c'], 0, None), 0.5)
    out = world.handle(ev.SignalReceived(signal.SIGTERM), 1.0)
    assert {s.name for s in of(act.SendSignal, out) if s.signum == signal.SIGTERM} == {'a', 'b'}
    assert not of(act.Exit, out)
    for name in ('a', 'b'):
        world.handle(ev.ProcessExited(name, world.pids[name], None, 15), 1.1)
        out = world.handle(ev.GroupChecked(name, world.pids[name], False), 1.1)
    assert of(act.Exit, out) and of(act.Exit, out)[0].code == 0
    assert not of(act.Spawn, out)


def test_quit_exits_at_once_leaving_processes_running():
    world = World(proc('a'))
    out = world.handle(ev.SignalReceived(signal.SIGQUIT), 1.0)
    assert not of(act.SendSignal, out)
    assert of(act.WriteState, out)
    assert of(act.Exit, out)[0].leave_running


def starts(out):
    """The processes a batch of actions starts: a start's first step clears its cgroup."""
    return [a.name for a in of(act.ClearTree, out)]


def cleared(policy, out, now):
    """What a start asks once its (empty) cgroup is cleared: the Spawn."""
    [clear] = of(act.ClearTree, out)
    return policy.handle(ev.TreeEmptied(clear.name), now)


def test_spawn_failure_retries_with_growing_delay():
    world = World()
    out = world.policy.handle(ev.ConfigLoaded(config(proc('a'))), 0.0)
    assert of(act.Spawn, cleared(world.policy, out, 0.0))
    world.policy.handle(ev.SpawnFailed('a', 'no such user "x"'), 0.0)
    assert world.state('a') == lc.FAILED
    assert world.timer('a') == 1.0
    out = world.policy.handle(ev.Tick(), 1.0)
    assert of(act.Spawn, cleared(world.policy, out, 1.0))
    world.policy.handle(ev.SpawnFailed('a', 'no such user "x"'), 1.0)
    assert world.timer('a') == 3.0


def test_rejected_config_changes_nothing():
    world = World(proc('a'))
    out = world.handle(ev.ConfigRejected(('/w.json: procs[0]: bad',)), 1.0)
    assert not of(act.SendSignal, out) and not of(act.Spawn, out)
    assert world.policy.snapshot()['config']['ok'] is False
    world.handle(ev.ConfigLoaded(config(proc('a'))), 2.0)
    assert world.policy.snapshot()['config']['ok'] is True


def test_the_config_record_keeps_the_wall_time_of_the_last_successful_load():
    """diprocd_config_load_timestamp_seconds (SPEC 6.4): a rejected edit keeps it."""
    world = World(proc('a'))
    world.handle(ev.ConfigLoaded(config(proc('a')), 1700000000.5), 1.0)
    world.handle(ev.ConfigRejected(('/w.json: procs[0]: bad',)), 2.0)
    record = world.policy.snapshot()['config']
    assert (record['ok'], record['loaded_at']) == (False, 1700000000.5)
    world.handle(ev.ConfigLoaded(config(proc('a')), 1700000060.0), 3.0)
    record = world.policy.snapshot()['config']
    assert (record['ok'], record['loaded_at']) == (True, 1700000060.0)


def test_adopted_process_is_kept_when_its_definition_is_unchanged():
    spec = config(proc('a')).procs[0]
    record = {'name': 'a', 'pid': 4242, 'started': 77, 'fingerprint': spec.fingerprint,
              'definition': definition_record(spec), 'starts': [0.0], 'restarts': 0}
    policy = WorkerPolicy()
    policy.handle(ev.PreviousRun((record,), ()), 5.0)
    out = policy.handle(ev.ConfigLoaded(config(proc('a'))), 5.0)
    assert not of(act.Spawn, out) and not of(act.SendSignal, out)
    assert policy.procs['a'].pid == 4242 and policy.procs['a'].state == lc.RUNNING


def test_adopted_process_with_changed_definition_is_restarted_and_removed_one_stopped():
    spec_a = config(proc('a')).procs[0]
    spec_b = config(proc('b')).procs[0]
    records = tuple({'name': s.name, 'pid': pid, 'started': 1, 'fingerprint': s.fingerprint,
                     'definition': definition_record(s)}
                    for s, pid in ((spec_a, 501), (spec_b, 502)))
    policy = WorkerPolicy()
    policy.handle(ev.PreviousRun(records, ()), 0.0)
    out = policy.handle(ev.ConfigLoaded(config(proc('a', args=['5']), proc('c'))), 0.0)
    assert {(s.name, s.pid) for s in of(act.SendSignal, out) if s.signum == signal.SIGTERM} == \
        {('a', 501), ('b', 502)}
    assert starts(out) == ['c']


def test_finished_restart_false_process_is_not_run_again_on_the_same_boot():
    spec = config(proc('a', restart=False)).procs[0]
    record = {'name': 'a', 'pid': None, 'started': None, 'fingerprint': spec.fingerprint,
              'definition': definition_record(spec), 'state': 'exited'}
    policy = WorkerPolicy()
    policy.handle(ev.PreviousRun((), (record,)), 0.0)
    out = policy.handle(ev.ConfigLoaded(config(proc('a', restart=False))), 0.0)
    assert not starts(out)
    assert policy.procs['a'].state == lc.EXITED


def test_daemon_waits_for_its_pid_file_then_runs_the_found_pid():
    daemon = proc('d', daemon=True, pid_file='/run/d.pid', write_pid=False)
    policy = WorkerPolicy()
    policy.handle(ev.ConfigLoaded(config(daemon)), 0.0)
    policy.handle(ev.ProcessStarted('d', 700, (50, 700)), 0.0)
    assert policy.procs['d'].state == lc.STARTING
    policy.handle(ev.ProcessExited('d', 700, 0, None), 0.01)
    out = policy.handle(ev.Tick(), policy.next_deadline())
    find = of(act.FindDaemon, out)
    assert find and find[0].not_before == 50
    policy.handle(ev.DaemonFound('d', 705, (51, 701)), 0.1)
    assert policy.procs['d'].state == lc.RUNNING and policy.procs['d'].pid == 705


def test_daemon_that_never_writes_its_pid_file_counts_as_a_failed_start():
    daemon = proc('d', daemon=True, pid_file='/run/d.pid', write_pid=False)
    policy = WorkerPolicy()
    policy.handle(ev.ConfigLoaded(config(daemon)), 0.0)
    policy.handle(ev.ProcessStarted('d', 700, (50, 700)), 0.0)
    out = policy.handle(ev.DaemonNotFound('d', 'no pid in it yet'), 10.5)
    assert starts(out) == ['d'], 'restart: true starts it again'
    assert 'did not name a live process' in policy.procs['d'].error


def test_window_arithmetic():
    window = lc.RestartWindow()
    for t in (0, 1, 2, 3, 4):
        assert window.allows(t)
        window.record(t)
    assert not window.allows(59.99)
    assert window.next_allowed(30) == 60
    assert window.allows(60)
    window.record(60)
    assert window.next_allowed(60.5) == 61
    assert lc.failure_retry_delay(1) == 1 and lc.failure_retry_delay(20) == 60


def test_a_process_killed_from_outside_comes_back_at_once_every_time():
    world = World(proc('a'))
    for i in range(30):
        out = world.handle(ev.ProcessExited('a', world.pids['a'], None, signal.SIGKILL),
                           1.0 + i * 0.1)
        assert of(act.Spawn, out), 'kill %d: restarted at once' % i
    assert world.policy.procs['a'].restarts == 30
    # ...but crashes still count: five starts in the window (the first one and four
    # after crashes) and the fifth crash waits
    for i in range(4):
        assert of(act.Spawn, world.crash('a', 5.0 + i))
    assert not of(act.Spawn, world.crash('a', 9.5))
    assert world.state('a') == lc.BACKOFF


def test_fault_signals_are_crashes():
    assert lc.is_crash(None)                       # an exit of its own, any status
    assert lc.is_crash(signal.SIGSEGV) and lc.is_crash(signal.SIGABRT)
    assert not lc.is_crash(signal.SIGKILL) and not lc.is_crash(signal.SIGTERM)


def test_a_move_the_table_does_not_allow_is_refused():
    world = World(proc('a'))
    with pytest.raises(lc.BadMove):
        world.policy.procs['a'].move(lc.STOPPED, 1.0)      # running -> stopped: never
    assert world.state('a') == lc.RUNNING


def test_a_process_removed_then_put_back_while_stopping_starts_again():
    world = World(proc('a', stop_timeout=5))
    world.handle(ev.ConfigLoaded(config()), 1.0)
    assert world.state('a') == lc.STOPPING
    world.handle(ev.ConfigLoaded(config(proc('a', stop_timeout=5))), 1.1)
    world.handle(ev.ProcessExited('a', world.pids['a'], None, 15), 1.2)
    out = world.handle(ev.GroupChecked('a', world.pids['a'], False), 1.2)
    assert of(act.Spawn, out) and world.state('a') == lc.RUNNING


def test_an_edit_undone_while_stopping_starts_the_latest_definition():
    world = World(proc('a'))
    world.handle(ev.ConfigLoaded(config(proc('a', args=['2']))), 1.0)
    world.handle(ev.ConfigLoaded(config(proc('a'))), 1.1)      # back to the original
    world.handle(ev.ProcessExited('a', world.pids['a'], None, 15), 1.2)
    out = world.handle(ev.GroupChecked('a', world.pids['a'], False), 1.2)
    assert [s.spec.args for s in of(act.Spawn, out)] == [('100',)]


def test_the_metrics_file_is_written_with_the_state_file_and_every_15_s():
    """SPEC 6.4: within 1 s of a change (with the state file), and at least every
    15 s even when nothing moved (usage counters; the file's age shows a live worker)."""
    world = World(proc('a'))
    doc = {'procs': [proc('a')], 'metrics_file': '/var/lib/prometheus/node-exporter/d.prom'}
    world.handle(ev.ConfigLoaded(parse_worker(doc, '/w.json', 'nobody')._replace(
        confine=('/var/lib/prometheus',))), 1.0)
    [write] = world.policy.flush(1.0)
    assert (write.metrics_file, write.confine) == (doc['metrics_file'], ('/var/lib/prometheus',))
    assert world.policy.flush(2.0) == [], 'nothing changed'
    due = world.policy.next_deadline()
    assert due <= 15.0
    world.handle(ev.Tick(), due)
    world.handle(ev.UsageSampled({'a': (None, None)}), due)
    assert of(act.WriteState, world.policy.flush(due)), 'rewritten though no value moved'
