"""Operator commands through the master (SPEC 6.3, `dpd-ctl --node`): a real
master, real clients and workers, real dpd-ctl; ipc:// endpoints in the test's
directory, CURVE keys in one test."""
import os
import signal
import subprocess
import time

import pytest
import zmq

from cluster_support import Cluster, ctl
from dpd.cluster import keys, protocol
from support import IS_ROOT, command, read_json, wait_until

USER = 'root' if IS_ROOT else None


def sleeper(workdir, name):
    """A shell that says hello, echoes a line per HUP, and sleeps."""
    proc = {'name': name, 'run': '/bin/sh', 'logs': workdir.join(name + '.log'),
            'args': ['-c', 'trap "echo hup" HUP; echo hello; while :; do sleep 0.05; done',
                     workdir.marker + '-' + name]}
    if USER:
        proc['user'] = USER
    return proc


@pytest.fixture
def cluster(workdir):
    made = Cluster(workdir)
    yield made
    made.stop()


def running_cluster(cluster, workdir, client_extra=None, nodes=('web1',)):
    lists = {name: [sleeper(workdir, 'a'), sleeper(workdir, 'b')] for name in nodes}
    cluster.write_master(lists)
    cluster.start_master()
    for name in nodes:
        node = cluster.add_node(name, client_extra=client_extra)
        node.start_client()
        wait_until(lambda node=node: set(node.running()) == {'a', 'b'}, 15)
        cluster.wait_node_state(name, 'in-sync')
    return cluster.nodes[nodes[0]]


def test_restart_signal_and_logs_on_a_node_through_the_master(cluster, workdir):
    node = running_cluster(cluster, workdir)
    before = node.running()
    code, out, err = ctl(cluster, 'restart', '--node', 'web1', 'a')
    assert code == 0, err
    after = node.running()
    assert after['a'] != before['a'] and after['b'] == before['b']
    assert 'a on web1: restarted, ready (pid %d)' % after['a'] in out
    code, out, err = ctl(cluster, 'signal', '--node', 'web1', 'HUP', 'a', '--json')
    assert code == 0 and '"pid":%d' % after['a'] in out.replace(' ', ''), err
    wait_until(lambda: 'hup' in open(workdir.join('a.log')).read())
    code, out, err = ctl(cluster, 'logs', '--node', 'web1', '-n', '2', 'a')
    assert code == 0 and out.splitlines()[-1] == 'hup', (out, err)


def test_logs_follow_through_the_master_and_stop_with_dpd_ctl(cluster, workdir):
    node = running_cluster(cluster, workdir)
    follow = subprocess.Popen(command('dpd-ctl') + ['logs', '-c', cluster.master_config,
                                                    '--node', 'web1', '-f', '-n', '1', 'b'],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        os.set_blocking(follow.stdout.fileno(), False)
        seen = []

        def has(text):
            chunk = follow.stdout.read()
            if chunk:
                seen.append(chunk)
            return text in b''.join(seen)
        wait_until(lambda: has(b'hello'), message='the backlog line')
        os.kill(node.running()['b'], signal.SIGHUP)
        wait_until(lambda: has(b'hup'), message=lambda: 'the followed line: %r' % seen)
    finally:
        follow.send_signal(signal.SIGINT)
        assert follow.wait(10) == 0
    # the relay is over: the node takes new commands (its budget is not used up)
    assert ctl(cluster, 'signal', '--node', 'web1', 'HUP', 'b')[0] == 0


def test_clear_errors_unknown_names_and_nodes(cluster, workdir):
    node = running_cluster(cluster, workdir)
    pid = node.running()['a']
    code, _, err = ctl(cluster, 'restart', '--node', 'web1', 'a', 'nope')
    assert code == 1 and 'no process nope' in err
    assert node.running()['a'] == pid, 'nothing restarted'
    code, _, err = ctl(cluster, 'restart', '--node', 'web9', 'a')
    assert code == 1 and 'no node web9' in err
    code, _, err = ctl(cluster, 'signal', '--node', 'web1', 'NOPE', 'a')
    assert code == 2 and 'unknown signal' in err
    code, _, err = ctl(cluster, 'restart', 'a')      # the master's config, without --node
    assert code == 1 and 'the master runs no processes: name a node with --node' in err


def test_a_node_that_is_not_connected_is_said_within_5_s(cluster, workdir):
    running_cluster(cluster, workdir)
    lists = read_json(cluster.master_config)['nodes']
    lists['web2'] = [sleeper(workdir, 'c')]
    cluster.write_master(lists)
    wait_until(lambda: 'web2' in cluster.master_state())
    started = time.monotonic()
    code, _, err = ctl(cluster, 'restart', '--node', 'web2', 'c')
    assert code == 1 and 'node web2 is not connected, never seen' in err
    assert time.monotonic() - started < 5
    cluster.nodes['web1'].client.kill9()             # gone, not yet stale at the master
    started = time.monotonic()
    code, _, err = ctl(cluster, 'restart', '--node', 'web1', 'a')
    assert code == 1 and 'node web1 did not answer within 5 s' in err, err
    assert time.monotonic() - started < 7


def test_a_node_may_refuse_remote_commands(cluster, workdir):
    node = running_cluster(cluster, workdir, client_extra={'remote_commands': False})
    pid = node.running()['a']
    code, _, err = ctl(cluster, 'restart', '--node', 'web1', 'a')
    assert code == 1 and 'node web1 refuses remote commands' in err
    assert node.running()['a'] == pid


def test_the_master_socket_is_for_the_master_files_owner(cluster, workdir):
    running_cluster(cluster, workdir)
    sock = cluster.master_config[:-len('.json')] + '.sock'
    assert oct(os.stat(sock).st_mode & 0o777) == oct(0o600)
    if not IS_ROOT:
        pytest.skip('needs root to ask as another user')
    done = subprocess.run(['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'] +
                          command('dpd-ctl') + ['restart', '-c', cluster.master_config,
                                                '--node', 'web1', 'a'],
                          capture_output=True, text=True, timeout=20)
    assert done.returncode == 1 and ('may not use' in done.stderr or
                                     'Permission denied' in done.stderr), done.stderr


def test_a_node_can_neither_command_the_master_nor_answer_for_another(cluster, workdir):
    """A rogue peer (no keys here: anyone may pose as a node) sends a COMMAND to the
    master and an ANSWER to a command it was not sent: both are dropped."""
    running_cluster(cluster, workdir, nodes=('web1', 'web2'))
    context = zmq.Context()
    rogue = context.socket(zmq.DEALER)
    try:
        rogue.connect(cluster.stats)
        rogue.send_multipart(protocol.command('web1', 'x-1', {'command': 'restart',
                                                              'names': ['a']}))
        assert rogue.poll(5000)
        kind = rogue.recv_multipart()[0]
        assert kind == b'ERROR', 'COMMAND is not a message a node may send'
        rogue.send_multipart(protocol.answer('web2', 'x-1', {'ok': True, 'code': 0}, True))
        wait_until(lambda: 'dropped an ANSWER from node web2' in cluster.master.log())
    finally:
        rogue.close(0)
        context.term()
    assert ctl(cluster, 'signal', '--node', 'web2', 'HUP', 'a')[0] == 0


def test_with_keys_commands_travel_on_the_nodes_own_channel(cluster, workdir):
    keydir = workdir.join('keys')
    authorized = workdir.join('authorized')
    os.mkdir(authorized)
    for name in ('master', 'web1'):
        keys.keygen(keydir, name)
    os.link(os.path.join(keydir, 'web1.key'), os.path.join(authorized, 'web1.key'))
    cluster.master_extra = {'secret_key': os.path.join(keydir, 'master.key_secret'),
                            'authorized_keys': authorized}
    node = running_cluster(cluster, workdir, client_extra={
        'secret_key': os.path.join(keydir, 'web1.key_secret'),
        'master_public_key': os.path.join(keydir, 'master.key')})
    assert '(CURVE)' in node.client.log()
    pid = node.running()['a']
    code, out, err = ctl(cluster, 'restart', '--node', 'web1', 'a')
    assert code == 0 and node.running()['a'] != pid, err
