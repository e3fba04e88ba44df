"""Operators' commands in the worker's policy (SPEC 6.3; dpd/worker/commands.py):
restart, signal and logs, driven with scripted facts and a fake clock."""
import logging
import signal

import pytest

from dpd.worker import actions as act
from dpd.worker import events as ev
from dpd.worker import lifecycle as lc
from dpd.worker.policy import WorkerPolicy
from worker_world import World, config, logged, notifying, of, proc


def tcp(**keys):
    return dict({'tcp': '127.0.0.1:8080'}, **keys)


def replies(out, number=None):
    return [r.message for r in of(act.Reply, out) if number is None or r.number == number]


def the_reply(out, number):
    [message] = replies(out, number)
    return message


def ok(*results):
    return {'ok': True, 'code': 0, 'results': [{'name': n, 'pid': p} for n, p in results]}


def sent(out):
    return [(a.name, a.pid, a.signum, a.group) for a in of(act.SendSignal, out)]


def window(world, name):
    return list(world.proc(name).window.starts)


# ===================================================================== restart

def test_restart_of_a_running_process_stops_it_then_starts_it_answered_when_running():
    world = World(proc('a', stop_timeout=3))
    old, starts = world.pids['a'], window(world, 'a')
    out = world.restart(1, 1.0, 'a')
    assert 'dpd-ctl restart a (uid 0)' in logged(out, logging.INFO)
    assert sent(out) == [('a', old, signal.SIGTERM, True), ('a', old, signal.SIGCONT, True)]
    assert world.state('a') == lc.STOPPING and not replies(out)
    assert world.policy.next_deadline() == 4.0                   # its stop_timeout runs
    out = world.stopped('a', 1.2)
    assert of(act.Spawn, out) and world.state('a') == lc.RUNNING
    new = world.pids['a']
    assert new != old
    assert the_reply(out, 1) == ok(('a', new))
    assert window(world, 'a') == starts, 'an operator\'s restart is not counted'
    assert world.proc('a').restarts == 1
    assert world.policy.restarting == {}


def test_restart_of_a_notify_process_is_answered_once_it_sent_ready():
    world = World(notifying('a'))
    world.notify('a', 'READY=1', 0.5)
    world.restart(1, 1.0, 'a')
    out = world.stopped('a', 1.1)
    assert of(act.Spawn, out) and world.state('a') == lc.STARTING and not replies(out)
    assert not replies(world.until(5.0))
    out = world.notify('a', 'READY=1', 5.5)
    assert world.state('a') == lc.RUNNING
    assert the_reply(out, 1) == ok(('a', world.pids['a']))


def test_restart_of_a_health_checked_process_is_answered_at_its_first_pass():
    world = World(proc('a', health=tcp(interval=5)))
    world.check('a', True, 0.1)
    world.restart(1, 1.0, 'a')
    out = world.stopped('a', 1.1)
    assert world.state('a') == lc.STARTING and not replies(out)
    out = world.check('a', False, 1.3)
    assert world.state('a') == lc.STARTING and not replies(out)
    out = world.check('a', True, 2.0)
    assert world.state('a') == lc.RUNNING
    assert the_reply(out, 1) == ok(('a', world.pids['a']))


def test_restart_of_an_exited_process_starts_it_at_once():
    world = World(proc('a', restart=False))
    world.crash('a', 1.0, code=0)
    assert world.state('a') == lc.EXITED
    out = world.restart(1, 2.0, 'a')
    assert not of(act.SendSignal, out) and of(act.Spawn, out)
    assert world.state('a') == lc.RUNNING
    assert the_reply(out, 1) == ok(('a', world.pids['a']))


def test_restart_of_a_failed_process_tries_now_and_says_why_it_cannot():
    world = World(proc('a'), failing={'a'})
    assert world.state('a') == lc.FAILED and world.policy.timers.get('a') == 1.0
    out = world.restart(1, 0.5, 'a')                 # before its own retry
    assert world.spawned == ['a', 'a'] and world.state('a') == lc.FAILED
    reply = the_reply(out, 1)
    assert reply['ok'] is False and reply['code'] == 1
    assert reply['error'] == 'a: cannot start: /bin/sleep: permission denied'
    assert reply['results'] == [{'name': 'a', 'error': 'cannot start: /bin/sleep: '
                                                       'permission denied'}]
    world.failing.clear()
    out = world.restart(2, 0.6, 'a')
    assert world.state('a') == lc.RUNNING and the_reply(out, 2) == ok(('a', world.pids['a']))


def test_restart_of_a_process_in_backoff_starts_it_at_once_uncounted():
    world = World(proc('a'))
    for i in range(5):
        world.crash('a', 1.0 + i)
    assert world.state('a') == lc.BACKOFF and world.policy.timers.get('a') == 60.0
    starts = window(world, 'a')
    out = world.restart(1, 6.0, 'a')
    assert of(act.Spawn, out) and world.state('a') == lc.RUNNING
    assert the_reply(out, 1) == ok(('a', world.pids['a']))
    assert window(world, 'a') == starts
    assert world.policy.timers.get('a') is None, 'its backoff deadline is gone'


def test_restarting_ten_times_in_a_row_never_leads_to_backoff():
    world = World(proc('a'))
    now = 0.0
    for number in range(1, 11):
        now += 1.0
        world.restart(number, now, 'a')
        out = world.stopped('a', now + 0.1)
        assert world.state('a') == lc.RUNNING, 'restart %d' % number
        assert the_reply(out, number)['ok']
    assert window(world, 'a') == [0.0]               # its first start only
    assert world.proc('a').restarts == 10
    out = world.crash('a', now + 1.0)                # and a crash after them restarts at once
    assert of(act.Spawn, out) and world.state('a') == lc.RUNNING


def test_a_process_stopping_for_being_unhealthy_restarts_uncounted_when_asked():
    world = World(proc('a', stop_timeout=1, health=tcp(interval=1, retries=1)))
    world.check('a', True, 0.1)
    world.check('a', False, 1.1)
    assert world.state('a') == lc.STOPPING and world.proc('a').stop.then == lc.THEN_RESTART
    starts = window(world, 'a')
    out = world.restart(1, 1.2, 'a')
    assert not of(act.SendSignal, out), 'it goes down already'
    world.stopped('a', 1.3)
    assert window(world, 'a') == starts
    out = world.check('a', True, 2.0)
    assert the_reply(out, 1) == ok(('a', world.pids['a']))


def test_restart_of_a_waiting_process_names_what_it_waits_for():
    world = World(notifying('db'), proc('web', depends=['db']))
    assert world.state('web') == lc.WAITING
    out = world.restart(1, 1.0, 'web')
    assert not of(act.Spawn, out) and world.state('web') == lc.WAITING
    reply = the_reply(out, 1)
    assert (reply['ok'], reply['code'], reply['error']) == (False, 1, 'web: waiting for db')


def test_restart_of_several_is_answered_once_all_are_ready():
    world = World(proc('a'), notifying('b'))
    world.notify('b', 'READY=1', 0.5)
    world.restart(1, 1.0, 'a', 'b')
    out = world.stopped('a', 1.1)
    assert not replies(out)
    out = world.stopped('b', 1.2)
    assert not replies(out) and world.state('b') == lc.STARTING
    out = world.notify('b', 'READY=1', 1.5)
    assert the_reply(out, 1) == ok(('a', world.pids['a']), ('b', world.pids['b']))


def test_one_unknown_name_refuses_the_whole_request():
    world = World(proc('a'), proc('b'))
    before = dict(world.pids)
    out = world.restart(1, 1.0, 'a', 'zz', 'b', 'yy')
    assert replies(out) == [{'ok': False, 'code': 1, 'error': 'no process zz, yy'}]
    assert not of(act.SendSignal, out) and not of(act.Spawn, out)
    assert world.state('a') == world.state('b') == lc.RUNNING and world.pids == before
    assert world.policy.restarting == {}
    out = world.ask(2, 'signal', ['a', 'zz'], 1.0, signal='HUP')
    assert replies(out) == [{'ok': False, 'code': 1, 'error': 'no process zz'}]
    assert not of(act.SendSignal, out)
    out = world.ask(3, 'logs', ['zz'], 1.0)
    assert replies(out) == [{'ok': False, 'code': 1, 'error': 'no process zz'}]


def test_a_removed_process_is_unknown_even_while_it_stops():
    world = World(proc('a', stop_timeout=5), proc('b'))
    world.handle(ev.ConfigLoaded(config(proc('b'))), 1.0)
    assert world.state('a') == lc.STOPPING
    out = world.restart(1, 1.1, 'a')
    assert replies(out) == [{'ok': False, 'code': 1, 'error': 'no process a'}]


def test_restart_while_the_worker_stops_is_refused():
    world = World(proc('a', stop_timeout=5))
    world.handle(ev.SignalReceived(signal.SIGTERM), 1.0)
    out = world.restart(1, 1.1, 'a')
    assert replies(out) == [{'ok': False, 'code': 1, 'error': 'the worker is stopping'}]
    assert not of(act.Spawn, world.stopped('a', 1.2))


def test_a_restart_under_way_when_the_worker_stops_is_answered_with_an_error():
    world = World(notifying('a', stop_timeout=5))
    world.notify('a', 'READY=1', 0.5)
    world.restart(1, 1.0, 'a')
    world.stopped('a', 1.1)
    assert world.state('a') == lc.STARTING
    out = world.handle(ev.SignalReceived(signal.SIGTERM), 1.2)
    reply = the_reply(out, 1)
    assert (reply['ok'], reply['code'], reply['error']) == (False, 1, 'a: the worker is '
                                                                      'stopping')


@pytest.mark.parametrize('restart', [True, False])
def test_a_restarted_process_that_dies_before_it_is_ready_is_answered_with_why(restart):
    world = World(notifying('a', restart=restart))
    world.notify('a', 'READY=1', 0.5)
    world.restart(1, 1.0, 'a')
    world.stopped('a', 1.1)
    out = world.crash('a', 1.3, code=3)
    reply = the_reply(out, 1)
    assert (reply['ok'], reply['code']) == (False, 1)
    assert reply['error'] == 'a: ended before it was ready (status 3)'


def daemon(name, **keys):
    return proc(name, run='/usr/sbin/food', daemon=True, pid_file='/run/%s.pid' % name,
                write_pid=False, **keys)


@pytest.mark.parametrize('restart', [True, False])
def test_a_restarted_daemon_whose_launcher_fails_is_answered_with_why(restart):
    """Answered at the failure, not once the process reaches backoff (restart:
    true starts it again, as after any crash)."""
    world = World(daemon('d', restart=restart))
    world.handle(ev.DaemonFound('d', 4242, (1, 4242)), 0.1)
    world.pids['d'] = 4242
    assert world.state('d') == lc.RUNNING
    world.restart(1, 1.0, 'd')
    world.stopped('d', 1.1)
    assert world.state('d') == lc.STARTING and world.proc('d').launch
    launcher = world.proc('d').launch.pid
    out = world.handle(ev.ProcessExited('d', launcher, 1, None), 1.2)
    reply = the_reply(out, 1)
    assert (reply['ok'], reply['code']) == (False, 1)
    assert reply['error'] == 'd: ended before it was ready (status 1)'
    assert world.state('d') == (lc.STARTING if restart else lc.EXITED)


def test_a_restarted_daemon_its_pid_file_never_names_is_answered_with_why():
    world = World(daemon('d'))
    world.handle(ev.DaemonFound('d', 4242, (1, 4242)), 0.1)
    world.pids['d'] = 4242
    world.restart(1, 1.0, 'd')
    world.stopped('d', 1.1)
    out = []
    for i in range(300):
        out += world.handle(ev.DaemonNotFound('d', 'no such file'), 1.2 + i * 0.05)
        if replies(out):
            break
    reply = the_reply(out, 1)
    assert reply['code'] == 1 and reply['error'].startswith('d: not ready: /run/d.pid did not '
                                                            'name a live process')


def test_a_restarted_process_found_unhealthy_before_ready_is_answered_with_why():
    world = World(proc('a', stop_timeout=1, health=tcp(interval=1, retries=1, start_period=2)))
    world.check('a', True, 0.1)
    world.restart(1, 1.0, 'a')
    world.stopped('a', 1.1)
    out = world.checks_fail('a', 3.2)
    reply = the_reply(out, 1)
    assert reply['code'] == 1
    assert reply['error'] == 'a: stopped before it was ready: unhealthy: not ready after 2 s'
    assert world.state('a') == lc.STOPPING


def test_a_process_removed_from_the_file_meanwhile_is_an_error():
    world = World(notifying('a'), proc('b'))
    world.notify('a', 'READY=1', 0.5)
    world.restart(1, 1.0, 'a')
    world.stopped('a', 1.1)
    out = world.handle(ev.ConfigLoaded(config(proc('b'))), 1.2)
    reply = the_reply(out, 1)
    assert (reply['code'], reply['error']) == (1, 'a: removed from the file meanwhile')


def test_an_operator_that_hung_up_gets_no_answer_and_the_restart_goes_on():
    world = World(notifying('a'))
    world.notify('a', 'READY=1', 0.5)
    world.restart(7, 1.0, 'a')
    world.stopped('a', 1.1)
    assert world.handle(ev.CommandGone(7), 1.2) == []
    assert world.policy.restarting == {}
    out = world.notify('a', 'READY=1', 1.5)
    assert world.state('a') == lc.RUNNING and not replies(out)
    assert world.handle(ev.CommandGone(99), 1.6) == [], 'an unknown connection: nothing'


def test_two_restarts_of_one_process_are_both_answered_by_its_one_new_run():
    world = World(notifying('a'))
    world.notify('a', 'READY=1', 0.5)
    old = world.pids['a']
    out = world.restart(1, 1.0, 'a')
    assert len(sent(out)) == 2
    out = world.restart(2, 1.05, 'a')                 # while it stops
    assert not sent(out) and not replies(out)
    world.stopped('a', 1.1)
    out = world.restart(3, 1.2, 'a')                  # while its new run gets ready
    assert not sent(out) and not of(act.Spawn, out) and not replies(out)
    out = world.notify('a', 'READY=1', 1.5)
    assert world.spawned == ['a', 'a'] and world.pids['a'] != old
    assert {r.number: r.message for r in of(act.Reply, out)} == {
        n: ok(('a', world.pids['a'])) for n in (1, 2, 3)}
    out = world.restart(4, 2.0, 'a')                  # once answered, a restart is a new one
    assert sent(out) == [('a', world.pids['a'], signal.SIGTERM, True),
                         ('a', world.pids['a'], signal.SIGCONT, True)]


# ===================================================================== signal

def test_signal_goes_to_the_main_pid_or_with_all_to_the_group():
    world = World(proc('a'), proc('b'))
    a, b = world.pids['a'], world.pids['b']
    out = world.ask(1, 'signal', ['a', 'b'], 1.0, signal='HUP')
    assert sent(out) == [('a', a, signal.SIGHUP, False), ('b', b, signal.SIGHUP, False)]
    assert the_reply(out, 1) == ok(('a', a), ('b', b))
    out = world.ask(2, 'signal', ['a'], 1.0, signal='SIGUSR1', all=True)
    assert sent(out) == [('a', a, signal.SIGUSR1, True)]
    assert the_reply(out, 2) == ok(('a', a))
    assert world.state('a') == world.state('b') == lc.RUNNING
    assert world.pids == {'a': a, 'b': b}


def test_signal_to_a_starting_process_reaches_it():
    world = World(notifying('a'))
    out = world.ask(1, 'signal', ['a'], 1.0, signal='USR1')
    assert sent(out) == [('a', world.pids['a'], signal.SIGUSR1, False)]


def test_signal_to_a_process_that_is_not_running_sends_nothing_at_all():
    world = World(proc('up'), proc('done', restart=False), proc('crashy'), failing={'broken'})
    world.crash('done', 1.0, code=0)
    for i in range(5):
        world.crash('crashy', 1.0 + i)
    assert (world.state('done'), world.state('crashy')) == (lc.EXITED, lc.BACKOFF)
    out = world.ask(1, 'signal', ['up', 'done', 'crashy'], 6.0, signal='TERM')
    assert not of(act.SendSignal, out)
    assert replies(out) == [{'ok': False, 'code': 1, 'error': 'done is not running (exited); '
                                                             'crashy is not running (backoff)'}]


def test_signal_to_a_failed_or_waiting_process_is_refused():
    world = World(proc('broken'), notifying('db'), proc('web', depends=['db']),
                  failing={'broken'})
    for name, state in (('broken', 'failed'), ('web', 'waiting')):
        out = world.ask(1, 'signal', [name], 1.0, signal='HUP', all=True)
        assert not of(act.SendSignal, out)
        assert replies(out) == [{'ok': False, 'code': 1,
                                 'error': '%s is not running (%s)' % (name, state)}]


# ===================================================================== logs

def test_logs_of_a_process_without_a_logs_file_are_refused():
    world = World(proc('a'))
    out = world.ask(1, 'logs', ['a'], 1.0)
    assert replies(out) == [{'ok': False, 'code': 1, 'error': 'a has no "logs" file'}]
    assert not of(act.StreamLog, out)


def test_logs_are_streamed_by_the_executor_whatever_the_process_state():
    world = World(proc('a', logs='/var/log/a.log', user='www-data', restart=False))
    world.crash('a', 1.0, code=0)
    out = world.ask(5, 'logs', ['a'], 2.0, lines=50, follow=True)
    assert of(act.StreamLog, out) == [act.StreamLog(5, '/var/log/a.log', 'www-data', 50, True,
                                                    None)]
    assert not replies(out), 'the control thread answers with the lines'
    out = world.ask(6, 'logs', ['a'], 2.0)
    assert of(act.StreamLog, out) == [act.StreamLog(6, '/var/log/a.log', 'www-data', 10, False,
                                                    None)]
    assert 'dpd-ctl logs a (uid 0)' in logged(out, logging.DEBUG)


# ===================================================================== bad requests

@pytest.mark.parametrize('request_, words', [
    ({'command': 'nope', 'names': ['a']}, 'unknown command'),
    ({'v': 2, 'command': 'restart', 'names': ['a']}, 'version'),
    ({'v': 1, 'command': 'restart', 'names': []}, '"names"'),
    ({'v': 1, 'command': 'signal', 'names': ['a'], 'signal': 'NOPE'}, 'unknown signal'),
    ({'v': 1, 'command': 'signal', 'names': ['a'], 'signal': 'SIG_DFL'}, 'unknown signal'),
    ({'v': 1, 'command': 'logs', 'names': ['a'], 'lines': -1}, '"lines"'),
    ({'v': 1, 'command': 'logs', 'names': ['a', 'b']}, 'one process name'),
], ids=['command', 'version', 'names', 'signal', 'sig-dfl', 'lines', 'logs-two'])
def test_a_bad_request_is_a_usage_error_and_does_nothing(request_, words):
    world = World(proc('a'), proc('b'))
    out = world.handle(ev.CommandReceived(1, request_, 0), 1.0)
    [reply] = replies(out)
    assert (reply['ok'], reply['code']) == (False, 2) and words in reply['error']
    assert [type(a) for a in out] == [act.Reply]


def test_a_request_for_another_node_is_refused_by_a_worker():
    world = World(proc('a'))
    out = world.ask(1, 'restart', ['a'], 1.0, node='web7')
    assert replies(out) == [{'ok': False, 'code': 1,
                             'error': '--node goes to the master; this is a worker'}]
    assert not of(act.SendSignal, out)


def test_a_request_before_any_file_was_loaded_knows_no_process():
    policy = WorkerPolicy()
    out = policy.handle(ev.CommandReceived(1, {'v': 1, 'command': 'restart', 'names': ['a']},
                                           0), 0.0)
    assert [r.message for r in of(act.Reply, out)] == [
        {'ok': False, 'code': 1, 'error': 'no process a'}]
