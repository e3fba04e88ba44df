"""SPEC 5 with real daemons: CURVE keys, the ZAP identity of nodes, rogue peers."""
import os
import queue
import time

import pytest
import zmq

from cluster_support import Cluster
from dpd.cluster import keys, protocol
from dpd.cluster.link import Curve, SocketPlan, ZmqLink
from dpd.inbox import Inbox
from support import IS_ROOT, pid_alive, run, wait_until, write_json


@pytest.fixture
def secure(workdir):
    """A master and node n1 with keys; n2's and a stranger's keys exist too."""
    keydir = workdir.join('keys')
    authorized = workdir.join('authorized')
    os.mkdir(authorized)
    for name in ('master', 'n1', 'n2', 'stranger', 'fake-master'):
        keys.keygen(keydir, name)
    for node in ('n1', 'n2'):
        os.link(os.path.join(keydir, node + '.key'), os.path.join(authorized, node + '.key'))
    cluster = Cluster(workdir, master_extra={
        'secret_key': os.path.join(keydir, 'master.key_secret'), 'authorized_keys': authorized})
    cluster.keydir = keydir
    yield cluster
    cluster.stop()


def client_keys(cluster, name, master='master'):
    return {'secret_key': os.path.join(cluster.keydir, name + '.key_secret'),
            'master_public_key': os.path.join(cluster.keydir, master + '.key')}


def marker_process(workdir, marker):
    """A process whose mere start would prove a list was applied."""
    return {'name': 'marker', 'run': '/bin/sh', 'args': ['-c', 'touch %s; exec sleep 1000'
                                                          % marker],
            'user': 'root' if IS_ROOT else None}


def test_with_keys_a_node_gets_its_list(secure, workdir):
    secure.write_master({'n1': [workdir.actor('a', 'sleep')]})
    secure.start_master()
    node = secure.add_node('n1', client_extra=client_keys(secure, 'n1'))
    node.start_client()
    node.client.wait_log('(CURVE)')
    wait_until(lambda: 'a' in node.running())
    secure.wait_node_state('n1', 'in-sync')
    assert 'no keys are configured' not in secure.master.log()


def test_an_unauthorized_node_key_gets_nothing(secure, workdir):
    secure.write_master({'stranger': [workdir.actor('a', 'sleep')]})
    secure.start_master()
    node = secure.add_node('stranger', client_extra=client_keys(secure, 'stranger'))
    node.start_client()
    secure.master.wait_log('unknown node key')
    node.client.wait_log('the master refused this node\'s key')
    assert node.procs() == []
    assert secure.master_state()['stranger']['state'] == 'never-seen'


def test_a_node_key_asking_as_another_node_is_refused(secure, workdir):
    secure.write_master({'n1': [workdir.actor('a', 'sleep')],
                         'n2': [workdir.actor('secret-of-n2', 'sleep', env={'PW': 's3cret'})]})
    secure.start_master()
    impostor = secure.add_node('n2', client_extra=client_keys(secure, 'n1'))
    impostor.start_client()
    secure.master.wait_log('the key of node n1 asked as node n2: refused')
    impostor.client.wait_log('this key belongs to node n1, not n2')
    assert impostor.procs() == []
    assert 's3cret' not in open(impostor.worker_config).read()


def test_a_rogue_master_without_the_masters_key_runs_nothing(secure, workdir):
    marker = workdir.join('marker')
    node = secure.add_node('n1', client_extra=client_keys(secure, 'n1'))
    before = open(node.worker_config, 'rb').read()
    for rogue_curve in (None, keys.load_secret(os.path.join(secure.keydir,
                                                            'fake-master.key_secret'))):
        with RogueMaster(secure, rogue_curve, marker_process(workdir, marker)) as rogue:
            client = node.start_client()
            client.wait_log('the handshake with the master failed')
            rogue.serve_for(3.0)
            client.stop()
        assert rogue.heard == 0, 'the rogue never heard the client'
    assert not os.path.exists(marker)
    assert open(node.worker_config, 'rb').read() == before


def test_a_client_pinning_another_key_never_applies(secure, workdir):
    marker = workdir.join('marker')
    secure.write_master({'n1': [marker_process(workdir, marker)]})
    secure.start_master()
    node = secure.add_node('n1', client_extra=client_keys(secure, 'n1', master='fake-master'))
    node.start_client()
    node.client.wait_log('is master_public_key the master\'s key?')
    secure.master.wait_log('a handshake on')
    assert node.procs() == [] and not os.path.exists(marker)


@pytest.mark.parametrize('side', ['master', 'client'])
def test_keys_on_one_side_only_are_reported_on_both(workdir, side):
    keydir = workdir.join('keys')
    for name in ('master', 'n1'):
        keys.keygen(keydir, name)
    authorized = workdir.join('authorized')
    os.mkdir(authorized)
    os.link(os.path.join(keydir, 'n1.key'), os.path.join(authorized, 'n1.key'))
    master_keys = {'secret_key': os.path.join(keydir, 'master.key_secret'),
                   'authorized_keys': authorized} if side == 'master' else {}
    cluster = Cluster(workdir, master_extra=master_keys)
    try:
        cluster.write_master({'n1': [workdir.actor('a', 'sleep')]})
        cluster.start_master()
        extra = {} if side == 'master' else {
            'secret_key': os.path.join(keydir, 'n1.key_secret'),
            'master_public_key': os.path.join(keydir, 'master.key')}
        node = cluster.add_node('n1', client_extra=extra)
        node.start_client()
        node.client.wait_log('keys are configured on one side only')
        cluster.master.wait_log('keys configured on one side only')
        assert node.procs() == []
    finally:
        cluster.stop()


@pytest.mark.parametrize('program', ['dpd-masterd', 'dpd-clientd'])
def test_a_secret_key_readable_by_others_is_refused(secure, workdir, program):
    secret = os.path.join(secure.keydir, ('master' if program == 'dpd-masterd' else 'n1')
                          + '.key_secret')
    os.chmod(secret, 0o644)
    if program == 'dpd-masterd':
        config = secure.master_config
        secure.write_master({})
    else:
        node = secure.add_node('n1', with_worker=False, client_extra=client_keys(secure, 'n1'))
        config = node.client_config
    status, _, err = run(program, '-f', config)
    assert status == 78 and 'readable by others' in err and 'chmod 600' in err
    status, _, err = run(program, '-t', config)
    assert status == 78 and 'readable by others' in err


def test_without_keys_a_network_endpoint_is_warned_about(workdir):
    config = workdir.join('master.json')
    write_json(config, {'master_stats': 'tcp://127.0.0.2:0', 'master_updates': 'ipc://' +
                        workdir.join('u'), 'nodes': {}})
    # 127.0.0.2 is loopback: no warning; the check itself is what we look at
    from dpd.cluster.config import is_local_endpoint
    assert is_local_endpoint('tcp://127.0.0.2:31123') and is_local_endpoint('ipc:///x')
    assert not is_local_endpoint('tcp://192.0.2.1:31123')
    assert not is_local_endpoint('tcp://*:31123')


def test_a_missing_authenticator_fails_closed(workdir):
    """A CURVE server with no ZAP handler refuses everyone (ZAP_ENFORCE_DOMAIN)."""
    keydir = workdir.join('keys')
    for name in ('server', 'client'):
        keys.keygen(keydir, name)
    server_pub, server_sec = keys.load_secret(os.path.join(keydir, 'server.key_secret'))
    endpoint = 'ipc://' + workdir.join('s')
    facts = Inbox()
    link = ZmqLink(facts, [SocketPlan('stats', zmq.ROUTER, endpoint, bind=True,
                                          curve=Curve(server_pub, server_sec))],
                   zap_keys=None)
    link.start()
    link.wait_ready()
    context = zmq.Context()
    client = context.socket(zmq.DEALER)
    try:
        client.linger = 0
        client.curve_publickey, client.curve_secretkey = keys.load_secret(
            os.path.join(keydir, 'client.key_secret'))
        client.curve_serverkey = server_pub
        client.connect(endpoint)
        client.send_multipart(protocol.hello('n1', 'boot', 'test', None))
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            try:
                fact = facts.get(timeout=0.1)
            except queue.Empty:
                continue
            assert fact.__class__.__name__ != 'LinkMessage', 'a message got through'
    finally:
        client.close()
        context.term()
        link.stop()


class RogueMaster:
    """The test's own sockets on the master's endpoints, sending a list to n1."""

    def __init__(self, cluster, curve, process):
        self.cluster, self.curve, self.process = cluster, curve, process
        self.heard = 0

    def __enter__(self):
        self.context = zmq.Context()
        self.updates = self.context.socket(zmq.XPUB)
        self.stats = self.context.socket(zmq.ROUTER)
        for sock, endpoint in ((self.updates, self.cluster.updates),
                               (self.stats, self.cluster.stats)):
            sock.linger = 0
            if self.curve is not None:
                sock.curve_server = True
                sock.curve_publickey, sock.curve_secretkey = self.curve
            sock.bind(endpoint)
        return self

    def serve_for(self, seconds):
        body, sha = protocol.body_of([self.process])
        deadline = time.monotonic() + seconds
        poller = zmq.Poller()
        poller.register(self.stats, zmq.POLLIN)
        while time.monotonic() < deadline:
            self.updates.send_multipart(protocol.notify('n1', 9, sha, 'rogue'))
            for _ in poller.poll(100):
                frames = self.stats.recv_multipart()
                self.heard += 1
                self.stats.send_multipart([frames[0]] + protocol.state('n1', 9, sha, body,
                                                                      'rogue'))

    def __exit__(self, *exc):
        self.updates.close()
        self.stats.close()
        self.context.term()


def test_pid_and_log_symlinks_leave_their_targets_alone(workdir):
    """(Also in the bad-input suite; here as the security promise itself.)"""
    victim = workdir.join('victim')
    with open(victim, 'w') as f:
        f.write('precious\n')
    os.symlink(victim, workdir.join('a.pid'))
    os.symlink(victim, workdir.join('b.log'))
    config = workdir.join('worker.json')
    write_json(config, {'procs': [workdir.actor('a', 'sleep', pid_file=workdir.join('a.pid')),
                                  workdir.actor('b', 'sleep', logs=workdir.join('b.log'))]})
    from support import Daemon
    worker = Daemon('dpd-workerd', config).start()
    try:
        worker.wait_log('a: cannot start')
        worker.wait_log('b: cannot start')
        assert 'symbolic link' in worker.log()
        with open(victim) as f:
            assert f.read() == 'precious\n'
    finally:
        worker.stop()
    assert not any(pid_alive(p) for p in [])
