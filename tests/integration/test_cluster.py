"""Master, clients and workers on one machine (SPEC 2.3, 2.4, 4): real daemons,
real ZeroMQ sockets (ipc:// in the test's directory; TCP on 127.0.0.1 where TCP
itself is under test)."""
import json
import os
import shutil
import signal
import subprocess

import pytest
import zmq

from cluster_support import Cluster
from support import (IS_ROOT, TIMEOUT, free_port, pid_alive, read_json, run, wait_until,
                     write_json)
from dpd.cluster import sockets
from dpd.cluster.config import ClientConfig


@pytest.fixture
def cluster(workdir):
    made = Cluster(workdir)
    yield made
    made.stop()


def procs(workdir, *names):
    return [workdir.actor(name, 'sleep') for name in names]


def test_client_started_before_the_master_converges(cluster, workdir):
    cluster.write_master({'n1': procs(workdir, 'a')})
    node = cluster.add_node('n1')
    node.start_client()
    node.client.wait_log('ready')
    assert node.procs() == [], 'nothing changes while the master is away'
    cluster.start_master()
    wait_until(lambda: 'a' in node.running(), message='a running on n1')
    cluster.wait_node_state('n1', 'in-sync')


def test_client_started_after_the_master_converges_and_a_master_edit_reaches_it(cluster,
                                                                                 workdir):
    cluster.write_master({'n1': procs(workdir, 'a')})
    cluster.start_master()
    node = cluster.add_node('n1')
    node.start_client()
    wait_until(lambda: 'a' in node.running())
    pid_a = node.running()['a']
    cluster.write_master({'n1': procs(workdir, 'a', 'b')})
    wait_until(lambda: 'b' in node.running(), message='the edit reaches the node')
    assert node.running()['a'] == pid_a, 'an unchanged process keeps its pid'
    record = node.worker_doc()['_diprocd']
    assert set(record) == {'gen', 'sha256', 'epoch'}
    cluster.wait_node_state('n1', 'in-sync')
    status, out, _ = wait_until(lambda: (lambda r: '2/2 running' in r[1] and r)(
        run('dpd-ctl', 'cluster', cluster.master_config)), message='the node reports both')
    assert status == 0 and 'n1' in out and 'IN-SYNC' in out
    status, out, _ = run('dpd-ctl', 'cluster', '--node', 'n1', cluster.master_config)
    assert status == 0 and 'a' in out and 'RUNNING' in out


def test_the_client_changes_only_procs_and_its_record(cluster, workdir):
    cluster.write_master({'n1': procs(workdir, 'a')})
    cluster.start_master()
    node = cluster.add_node('n1', with_worker=False)
    write_json(node.worker_config, {'log_file': os.path.join(node.dir, 'w.log'),
                                    'procs': [], '_admin_note': 'keep me'}, mode=0o600)
    node.start_worker()
    node.start_client()
    wait_until(lambda: node.procs() == ['a'])
    doc = node.worker_doc()
    assert doc['log_file'] == os.path.join(node.dir, 'w.log')
    assert doc['_admin_note'] == 'keep me'
    assert os.stat(node.worker_config).st_mode & 0o777 == 0o600


def test_the_client_creates_a_missing_worker_file(cluster, workdir):
    cluster.write_master({'n1': procs(workdir, 'a')})
    cluster.start_master()
    node = cluster.add_node('n1', with_worker=False)
    os.unlink(node.worker_config)
    node.start_client()
    wait_until(lambda: node.procs() == ['a'])
    assert os.stat(node.worker_config).st_mode & 0o777 == 0o600


def test_a_node_absent_from_the_master_file_is_left_alone(cluster, workdir):
    cluster.write_master({'n1': procs(workdir, 'a'), 'n2': procs(workdir, 'b')})
    cluster.start_master()
    n2 = cluster.add_node('n2')
    n2.start_client()
    wait_until(lambda: 'b' in n2.running())
    pid_b = n2.running()['b']
    cluster.write_master({'n1': procs(workdir, 'a')})
    cluster.master.wait_log('node n2: no longer in the master file')
    cluster.wait_node_state('n2', 'unmanaged')
    assert n2.procs() == ['b'] and n2.running()['b'] == pid_b
    status, _, _ = run('dpd-ctl', 'cluster', cluster.master_config)
    assert status == 150, 'n1 was never seen'


def test_an_empty_list_stops_everything_on_that_node(cluster, workdir):
    cluster.write_master({'n1': procs(workdir, 'a', 'b')})
    cluster.start_master()
    node = cluster.add_node('n1')
    node.start_client()
    wait_until(lambda: len(node.running()) == 2)
    pids = list(node.running().values())
    cluster.write_master({'n1': []})
    wait_until(lambda: node.procs() == [] and not node.running())
    wait_until(lambda: not any(pid_alive(pid) for pid in pids))


def test_an_invalid_node_list_keeps_its_last_valid_list_and_others_proceed(cluster, workdir):
    cluster.write_master({'n1': procs(workdir, 'a'), 'n2': procs(workdir, 'b')})
    cluster.start_master()
    n1, n2 = cluster.add_node('n1'), cluster.add_node('n2')
    n1.start_client()
    n2.start_client()
    wait_until(lambda: 'a' in n1.running() and 'b' in n2.running())
    bad = dict(workdir.actor('a2', 'sleep'), resatrt=True)
    cluster.write_master({'n1': [bad], 'n2': procs(workdir, 'b', 'c')})
    cluster.master.wait_log('nodes["n1"][0] ("a2"): unknown key "resatrt"')
    wait_until(lambda: 'c' in n2.running(), message='n2 proceeds')
    assert n1.procs() == ['a']
    status, out, _ = run('dpd-ctl', 'cluster', cluster.master_config)
    assert status == 150 and 'resatrt' in out
    status, _, err = run('dpd-masterd', '-t', cluster.master_config)
    assert status == 78 and 'resatrt' in err


def test_an_invalid_master_file_changes_nothing(cluster, workdir):
    cluster.write_master({'n1': procs(workdir, 'a')})
    cluster.start_master()
    node = cluster.add_node('n1')
    node.start_client()
    wait_until(lambda: 'a' in node.running())
    before = node.worker_doc()
    with open(cluster.master_config, 'w') as f:
        f.write('{"nodes": {"n1": []')
    cluster.master.wait_log('master file rejected; every node keeps its list')
    cluster.master.signal(signal.SIGHUP)     # and a reload of the same bad file
    cluster.master.wait_log('HUP: reloading')
    assert node.worker_doc() == before
    status, out, _ = run('dpd-ctl', 'cluster', cluster.master_config)
    assert status == 150 and 'master file rejected' in out


def test_a_master_killed_and_restarted_changes_no_pid_and_nodes_resync(cluster, workdir):
    cluster.write_master({'n1': procs(workdir, 'a'), 'n2': procs(workdir, 'b')})
    cluster.start_master()
    nodes = [cluster.add_node(n) for n in ('n1', 'n2')]
    for node in nodes:
        node.start_client()
    wait_until(lambda: all(len(node.running()) == 1 for node in nodes))
    pids = [node.running() for node in nodes]
    records = [node.worker_doc()['_diprocd'] for node in nodes]
    cluster.master.kill9()
    cluster.start_master()
    for name in ('n1', 'n2'):
        cluster.wait_node_state(name, 'in-sync')
    assert [node.running() for node in nodes] == pids
    assert [node.worker_doc()['_diprocd']['gen'] for node in nodes] == \
        [record['gen'] for record in records], 'versions survive a master restart'


def test_a_node_never_gets_another_nodes_list(cluster, workdir):
    cluster.write_master({'web1': procs(workdir, 'one'), 'web10': procs(workdir, 'ten'),
                          'web1.domain.tld': procs(workdir, 'fqdn')})
    cluster.start_master()
    node = cluster.add_node('web1')
    node.start_client()
    wait_until(lambda: 'one' in node.running())
    cluster.write_master({'web1': procs(workdir, 'one'), 'web10': procs(workdir, 'ten', 'x'),
                          'web1.domain.tld': procs(workdir, 'fqdn', 'y')})
    cluster.wait_node_state('web1', 'in-sync')
    node.client.wait_log('ready')
    assert node.procs() == ['one']
    assert 'web10' not in node.client.log() or 'dropped' not in node.client.log()


def test_two_clients_claiming_one_node_are_reported(cluster, workdir):
    cluster.write_master({'n1': procs(workdir, 'a')})
    cluster.start_master()
    first = cluster.add_node('n1')
    twin = cluster.add_node('twin-of-n1', with_worker=False, client_extra={'node_name': 'n1'})
    first.start_client()
    twin.start_client()
    cluster.master.wait_log('node n1: two clients claim this node')
    wait_until(lambda: cluster.master_state().get('n1', {}).get('clients') == 2)
    status, out, _ = run('dpd-ctl', 'cluster', cluster.master_config)
    assert '2 clients claim this node' in out


@pytest.mark.skipif(not IS_ROOT, reason='root processes need a root worker')
def test_allowed_users_rejects_a_list_and_keeps_the_file(cluster, workdir):
    cluster.write_master({'n1': procs(workdir, 'a')})
    cluster.start_master()
    node = cluster.add_node('n1', client_extra={'allowed_users': ['nobody']})
    node.start_client()
    node.client.wait_log('procs[0] ("a").user: root is not in this node\'s allowed_users')
    cluster.wait_node_state('n1', 'rejected')
    assert node.procs() == []
    status, out, _ = run('dpd-ctl', 'cluster', cluster.master_config)
    assert status == 150 and 'refused' in out and 'allowed_users' in out
    # without allowed_users: any user but root
    doc = read_json(node.client_config)
    del doc['allowed_users']
    write_json(node.client_config, doc)
    node.client.signal(signal.SIGHUP)
    node.client.wait_log('root is accepted only when this node\'s allowed_users lists it')
    assert node.procs() == []


def test_a_hand_edited_worker_file_is_put_back(cluster, workdir):
    cluster.write_master({'n1': procs(workdir, 'a')})
    cluster.start_master()
    node = cluster.add_node('n1')
    node.start_client()
    wait_until(lambda: 'a' in node.running())
    doc = node.worker_doc()
    doc['procs'].append(workdir.actor('intruder', 'sleep'))
    write_json(node.worker_config, doc, mode=0o600)
    node.client.wait_log('was edited by hand')
    wait_until(lambda: node.procs() == ['a'], message='the master\'s list is back')


def test_node_name_from_the_host_name(cluster, workdir):
    import socket
    host = socket.gethostname()
    cluster.write_master({host: procs(workdir, 'a')})
    cluster.start_master()
    node = cluster.add_node('h', client_extra={'node_name': '%H'})
    node.start_client()
    node.client.wait_log('node %s;' % host)
    wait_until(lambda: node.procs() == ['a'])


def test_client_and_master_reports_and_signals(cluster, workdir):
    cluster.write_master({'n1': procs(workdir, 'a')})
    master = cluster.start_master()
    node = cluster.add_node('n1')
    client = node.start_client()
    wait_until(lambda: 'a' in node.running())
    cluster.wait_node_state('n1', 'in-sync')
    state = cluster.master_state()['n1']
    wait_until(lambda: cluster.master_state()['n1']['processes'] and
               cluster.master_state()['n1']['processes'][0]['state'] == 'running')
    assert state['worker']['running'] is True
    client_state = read_json(os.path.join(node.dir, 'client.state.json'))
    assert client_state['status'] == 'in-sync' and client_state['node'] == 'n1'
    for daemon in (master, client):
        daemon.signal(signal.SIGUSR1)
        daemon.wait_log('USR1: log files reopened')
    assert client.stop() == 0 and master.stop() == 0
    assert json.dumps(state)


def master_ends(port):
    """`ss -o` of the established TCP connections whose local port is `port`."""
    done = subprocess.run(['ss', '-tnoH', 'state', 'established', '( sport = :%d )' % port],
                          capture_output=True, text=True, timeout=TIMEOUT, check=True,
                          stdin=subprocess.DEVNULL)
    return done.stdout.splitlines()


@pytest.mark.skipif(shutil.which('ss') is None, reason='`ss` (iproute2) is not installed')
def test_the_kernel_times_a_node_connection_at_the_master_not_zeromq(workdir):
    """A client asks the master for no ZMTP timeout (TTL): libzmq keeps one as a
    timer and cancels it at every message by a walk over all of its timers, a
    cost that grows with the fleet (dpd/cluster/sockets.py). TCP keepalive on the
    master's end of the connection drops a dead node's connection instead."""
    config = ClientConfig(path='c.json', master_stats='tcp://127.0.0.1:1', node_name='n1',
                          master_updates=None, conf_file='w.json')
    options = {zmq.SocketOption(option).name for plan in sockets.client_plans(config, None)
               for option, _ in plan.options}
    assert 'HEARTBEAT_IVL' in options and 'HEARTBEAT_TTL' not in options, options
    port = free_port()
    cluster = Cluster(workdir)
    cluster.stats = 'tcp://127.0.0.1:%d' % port
    try:
        cluster.write_master({'n1': []})
        cluster.start_master()
        node = cluster.add_node('n1', with_worker=False)
        node.start_client()
        cluster.wait_node_state('n1', 'in-sync')
        # (while data is in flight, the timer shown is the retransmission's)
        wait_until(lambda: [('timer:(keepalive,' in end) for end in master_ends(port)] == [True],
                   message=lambda: 'no keepalive timer: %s' % master_ends(port))
    finally:
        cluster.stop()
