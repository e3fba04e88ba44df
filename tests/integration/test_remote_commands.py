"""Operator commands through the master (SPEC 6.3, `dpd-ctl --node`): a real
master, real clients and workers, real dpd-ctl; ipc:// endpoints in the test's
directory, CURVE keys in one test."""
import json
import os
import signal
import socket
import subprocess
import time

import pytest
import zmq

from cluster_support import Cluster, ctl
from dpd import control
from dpd.cluster import keys, protocol
from support import (IS_ROOT, PYTHON, TIMEOUT, answer_lines, command, peak_rss_mib,
                     read_json, wait_until)

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


# Twelve lines of 20,000 characters that JSON writes in 6 bytes each (1.4 MB as one
# ANSWER, more than the master takes: the report was a process's long lines), then
# 2 MB of short ones (the hundreds of pieces of a big backlog, none lost).
LONG_LINES = (
    'import sys, time\n'
    'for i in range(12):\n'
    '    sys.stdout.buffer.write(("%02d " % i + "\\u00e9\\x01" * 10000 + "\\n").encode())\n'
    'for i in range(4000):\n'
    '    sys.stdout.buffer.write(("%04d " % i + "y" * 495 + "\\n").encode())\n'
    'sys.stdout.flush()\n'
    'while True:\n'
    '    time.sleep(60)\n')


def long_lines(workdir, name):
    proc = {'name': name, 'run': PYTHON, 'logs': workdir.join(name + '.log'),
            'args': ['-c', LONG_LINES, workdir.marker + '-' + name]}
    if USER:
        proc['user'] = USER
    return proc


def running_cluster(cluster, workdir, client_extra=None, nodes=('web1',), more=()):
    lists = {name: [sleeper(workdir, 'a'), sleeper(workdir, 'b')] + list(more)
             for name in nodes}
    cluster.write_master(lists)
    cluster.start_master()
    names = {p['name'] for p in lists[nodes[0]]}
    for name in nodes:
        node = cluster.add_node(name, client_extra=client_extra)
        node.start_client()
        wait_until(lambda node=node: set(node.running()) == names, 15)
        cluster.wait_node_state(name, 'in-sync')
    return cluster.nodes[nodes[0]]


class Rogue:
    """A peer that says it is node `name` (no keys: anyone may) and answers the
    master's COMMANDs by hand."""

    def __init__(self, cluster, name):
        self.cluster, self.name = cluster, name
        self.context = zmq.Context()
        self.sockets = []
        self.connect()

    def connect(self):
        """A new connection, which says HELLO (the node's connection from now on)."""
        self.sock = self.context.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.SNDHWM, 2)
        self.sock.connect(self.cluster.stats)
        self.sockets.append(self.sock)
        self.sock.send_multipart(protocol.hello(self.name, 'rogue-%d' % len(self.sockets),
                                                '1', None))
        self.expect('STATE')

    def receive(self, timeout=TIMEOUT):
        assert self.sock.poll(timeout * 1000), 'the master said nothing'
        return protocol.decode_reply(self.sock.recv_multipart())

    def expect(self, kind, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, 'no %s from the master' % kind
            message = self.receive(left)
            if message.kind == kind:
                return message

    def accept(self):
        """The next COMMAND, acknowledged: its ref."""
        ref = self.expect('COMMAND').fields['ref']
        self.answer(ref, {'ok': True, 'code': 0, 'accepted': True}, False)
        return ref

    def answer(self, ref, answer, done):
        self.sock.send_multipart(protocol.answer(self.name, ref, answer, done))

    def close(self):
        for sock in self.sockets:
            sock.close(0)
        self.context.term()


@pytest.fixture
def rogue(cluster, workdir):
    """The master, with web1 in its file, and a rogue web1 instead of its client."""
    cluster.write_master({'web1': [sleeper(workdir, 'a')]})
    cluster.start_master()
    made = Rogue(cluster, 'web1')
    yield made
    made.close()


def dpd_ctl(cluster, *args):
    return subprocess.Popen(command('dpd-ctl') + list(args[:1]) + ['-c', cluster.master_config] +
                            list(args[1:]), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


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


def test_a_backlog_over_a_messages_limit_comes_whole_through_the_master(cluster, workdir):
    """The client sent a backlog as one ANSWER: over 1 MiB the master dropped it
    (over 2 MiB libzmq dropped the node's connection), and dpd-ctl printed nothing
    and never returned. Now it comes in pieces the master takes."""
    running_cluster(cluster, workdir, more=[long_lines(workdir, 'long')])
    path = workdir.join('long.log')
    wait_until(lambda: os.path.exists(path) and open(path, 'rb').read().count(b'\n') == 4012)
    done = subprocess.run(command('dpd-ctl') + ['logs', '-c', cluster.master_config, '--node',
                                                'web1', '-n', '10000', 'long'],
                          capture_output=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr
    assert done.stdout == open(path, 'rb').read()
    assert 'dropped a bad message' not in cluster.master.log()


def test_an_answer_the_master_cannot_take_or_a_lost_connection_ends_the_command(cluster,
                                                                                 rogue):
    """Whatever a node sends, dpd-ctl gets an answer: an ANSWER too large for the
    master, or a connection libzmq drops (a message over MAXMSGSIZE) and the node
    makes again, end the command with the reason, and the node gets CANCEL."""
    asking = dpd_ctl(cluster, 'logs', '--node', 'web1', 'a')
    ref = rogue.accept()
    rogue.answer(ref, {'ok': True, 'code': 0, 'text': 'x' * 1500000}, True)
    _, err = asking.communicate(timeout=TIMEOUT)
    assert asking.returncode == 1
    assert 'node web1 sent an answer the master cannot take (ANSWER header of' in err
    assert rogue.expect('CANCEL').fields['ref'] == ref

    asking = dpd_ctl(cluster, 'logs', '--node', 'web1', '-f', 'a')
    ref = rogue.accept()
    rogue.answer(ref, {'ok': True, 'code': 0, 'text': 'x' * 3000000}, False)
    rogue.connect()
    _, err = asking.communicate(timeout=TIMEOUT)
    assert asking.returncode == 1
    assert 'node web1 connected to the master again: what it answered on its last ' \
           'connection is lost' in err
    assert rogue.expect('CANCEL').fields['ref'] == ref, 'on its new connection'


def test_a_node_that_answers_faster_than_dpd_ctl_reads_is_cancelled(cluster, rogue):
    """A node (a stolen key) answering `logs -f` with 1 MB ANSWERs while dpd-ctl
    reads nothing (a pager) grew the master by 930 MiB in two minutes. Now at most
    control.MAX_PENDING waits for dpd-ctl: beyond, the node gets CANCEL, and dpd-ctl
    an error after what waited."""
    reader = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    reader.connect(cluster.master_config[:-len('.json')] + '.sock')
    with reader:
        reader.sendall(json.dumps({'v': 1, 'command': 'logs', 'names': ['a'], 'lines': 10,
                                   'follow': True, 'node': 'web1'}).encode() + b'\n')
        ref = rogue.accept()
        text, sent, cancel = 'x' * 900000, 0, None
        deadline = time.monotonic() + TIMEOUT
        while cancel is None:
            assert time.monotonic() < deadline and sent < 64 << 20, \
                'no CANCEL after %d MB sent' % (sent >> 20)
            ready = rogue.sock.poll(100, zmq.POLLIN | zmq.POLLOUT)
            if ready & zmq.POLLIN:
                message = rogue.receive()
                cancel = message if message.kind == 'CANCEL' else None
            elif ready & zmq.POLLOUT:
                rogue.answer(ref, {'ok': True, 'code': 0, 'text': text}, False)
                sent += len(text)
        assert cancel.fields['ref'] == ref
        assert peak_rss_mib(cluster.master.pid) < 100, 'about 40 MiB; unbounded, far more'
        received = answer_lines(reader)
    *pieces, last = received
    assert sum(len(p['text']) for p in pieces) <= control.MAX_PENDING
    assert last['done'] and last['code'] == 1
    assert 'answers came faster than dpd-ctl read them' in last['error']
    asking = dpd_ctl(cluster, 'signal', '--node', 'web1', 'HUP', 'a')
    rogue.answer(rogue.accept(), {'ok': True, 'code': 0, 'results': [{'name': 'a'}]}, True)
    _, err = asking.communicate(timeout=TIMEOUT)
    assert asking.returncode == 0, err
