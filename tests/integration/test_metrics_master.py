"""SPEC 6.4, the master's side: GET /metrics follows the cluster, real consumers
read it, and no client of the endpoint can stall it or the master."""
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest
import zmq

from cluster_support import Cluster
from support import Daemon, free_port, wait_until
from dpd.cluster import protocol

parser = pytest.importorskip('prometheus_client.parser')
PROMTOOL = '/usr/bin/promtool'


def scrape(port, timeout=5.0):
    with urllib.request.urlopen('http://127.0.0.1:%d/metrics' % port, timeout=timeout) as answer:
        assert answer.headers['Content-Type'] == 'text/plain; version=0.0.4; charset=utf-8'
        return answer.read().decode()


def scrape_once_published(port):
    """The text, or '' while the master has made none yet (503: its first state
    write, at most 2 s after its start, makes the first)."""
    try:
        return scrape(port)
    except urllib.error.HTTPError as err:
        if err.code != 503:
            raise
        return ''


def samples(port):
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in parser.text_string_to_metric_families(scrape_once_published(port))
            for s in family.samples}


def value(found, sample_name, **labels):
    return found.get((sample_name, tuple(sorted(labels.items()))))


def metric(port, sample_name, **labels):
    return value(samples(port), sample_name, **labels)


@pytest.fixture
def cluster(workdir):
    port = free_port()
    cluster = Cluster(workdir, master_extra={'metrics_listen': '127.0.0.1:%d' % port})
    cluster.port = port
    yield cluster
    cluster.stop()


def test_the_masters_metrics_follow_the_nodes_and_the_master_file(cluster, workdir):
    web = workdir.actor('web', 'sleep')
    cluster.write_master({'n1': [web]})
    cluster.start_master()
    node = cluster.add_node('n1')
    node.start_client()
    port = cluster.port
    wait_until(lambda: metric(port, 'diprocd_process_up', node='n1', name='web') == 1 and
               metric(port, 'diprocd_node_in_sync', node='n1') == 1)
    found = samples(port)
    assert value(found, 'diprocd_process_restarts_total', node='n1', name='web') == 0
    assert value(found, 'diprocd_node_state', node='n1', state='in-sync') == 1
    assert abs(value(found, 'diprocd_node_last_seen_timestamp_seconds', node='n1')
               - time.time()) < 30
    assert value(found, 'diprocd_config_load_success', node='n1') == 1, "n1's worker"
    assert value(found, 'diprocd_config_load_timestamp_seconds', node='n1') > 0
    loaded = value(found, 'diprocd_config_load_timestamp_seconds')
    assert value(found, 'diprocd_config_load_success') == 1 and loaded > 0, 'the master file'

    os.kill(node.running()['web'], signal.SIGKILL)
    wait_until(lambda: metric(port, 'diprocd_process_restarts_total', node='n1', name='web') == 1
               and metric(port, 'diprocd_process_up', node='n1', name='web') == 1)

    # a rejected master file: 0, and the time of the last good load kept
    with open(cluster.master_config, 'w') as f:
        f.write('{"nodes": ')
    wait_until(lambda: metric(port, 'diprocd_config_load_success') == 0)
    assert metric(port, 'diprocd_config_load_timestamp_seconds') == loaded
    # a valid edit: 1, a later time, and the node in sync once the edit reached it
    cluster.write_master({'n1': [web, workdir.actor('db', 'sleep')]})
    wait_until(lambda: metric(port, 'diprocd_config_load_success') == 1)
    assert metric(port, 'diprocd_config_load_timestamp_seconds') > loaded
    wait_until(lambda: metric(port, 'diprocd_process_up', node='n1', name='db') == 1 and
               metric(port, 'diprocd_node_in_sync', node='n1') == 1)


def report_as(stats, node, processes):
    """A REPORT sent as `node` by the test (without keys, anyone may), as a
    confused or hostile peer would write it."""
    context = zmq.Context()
    dealer = context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 1000)
    try:
        dealer.connect(stats)
        dealer.send_multipart(protocol.report(
            node, 'boot-x', '9.9', None, worker={'running': True, 'config_ok': False},
            processes=processes))
        assert dealer.poll(10000), 'the master answers'
        dealer.recv_multipart()
    finally:
        dealer.close()
        context.term()


HOSTILE = ['quote"d', 'back\\slash', 'new\nline', 'caf\u00e9 \u2603', '{x="1"} 2', 'a\tb',
           'quote"d']


@pytest.mark.skipif(not os.access(PROMTOOL, os.X_OK),
                    reason='needs %s (Debian package prometheus)' % PROMTOOL)
def test_promtool_accepts_the_answer_whatever_the_nodes_report(cluster, workdir):
    cluster.write_master({'n1': [workdir.actor('web', 'sleep')], 'odd': []})
    cluster.start_master()
    report_as(cluster.stats, 'odd', [
        {'name': name, 'state': 'running' if i % 2 else 'a "new" state\n', 'restarts': i,
         'since': 1700000000.5, 'health': 'healthy' if i % 3 else None,
         'memory_bytes': 1 << 20, 'cpu_seconds': 0.5} for i, name in enumerate(HOSTILE)])
    port = cluster.port
    text = wait_until(lambda: (lambda t: 'quote\\"d' in t and t)(scrape_once_published(port)))
    checked = subprocess.run([PROMTOOL, 'check', 'metrics'], input=text.encode(),
                             capture_output=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    found = samples(port)
    for name in HOSTILE:
        assert value(found, 'diprocd_process_restarts_total', node='odd', name=name) == \
            HOSTILE.index(name), 'a name reported twice is said once, the first time'
    assert value(found, 'diprocd_config_load_success', node='odd') == 0


def connect(port):
    return socket.create_connection(('127.0.0.1', port), timeout=5)


def answer_of(sock):
    """Whatever the server sent before it closed (b'' for a reset)."""
    chunks = []
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    return b''.join(chunks)


def closed_by_server(sock):
    sock.setblocking(False)
    try:
        return sock.recv(1) == b''
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


def test_slow_huge_garbage_and_many_clients_stall_neither_the_endpoint_nor_the_master(
        cluster, workdir):
    cluster.write_master({'n1': [workdir.actor('web', 'sleep')]})
    cluster.start_master()
    node = cluster.add_node('n1')
    node.start_client()
    port = cluster.port
    wait_until(lambda: metric(port, 'diprocd_node_in_sync', node='n1') == 1)
    held = []
    try:
        idle = [connect(port) for _ in range(150)]                     # more than allowed
        held.extend(idle)
        silent_reader = connect(port)
        silent_reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        silent_reader.sendall(b'GET /metrics HTTP/1.1\r\n\r\n')        # and never reads
        held.append(silent_reader)
        garbage = connect(port)
        garbage.sendall(bytes(range(256)) * 4 + b'\r\n\r\n')
        huge = connect(port)
        try:
            huge.sendall(b'GET /metrics HTTP/1.1\r\nX: ' + b'a' * (1 << 20) + b'\r\n\r\n')
        except (BrokenPipeError, ConnectionResetError):
            pass                                 # refused before the end: as well
        held.extend((garbage, huge))
        assert answer_of(garbage).startswith(b'HTTP/1.1 400 ')
        refused = answer_of(huge)
        assert refused == b'' or refused.startswith(b'HTTP/1.1 431 '), 'a reset, or 431'

        dribble = connect(port)
        held.append(dribble)
        dribble.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for byte in b'GET /metrics HTTP/1.1\r\nHost: m\r\n\r\n':
            dribble.send(bytes([byte]))
        assert answer_of(dribble).startswith(b'HTTP/1.1 200 OK\r\n'), 'slow but whole: served'

        # meanwhile: other scrapes are answered at once, and the master serves its node
        for _ in range(5):
            started = time.monotonic()
            assert 'diprocd_node_in_sync{node="n1"} 1' in scrape(port, timeout=2.0)
            assert time.monotonic() - started < 1.0
        cluster.write_master({'n1': [workdir.actor('web', 'sleep'), workdir.actor('db', 'sleep')]})
        wait_until(lambda: 'db' in node.running() and
                   metric(port, 'diprocd_process_up', node='n1', name='db') == 1)

        # the oldest of those that never sent a request made room for the others
        assert sum(closed_by_server(sock) for sock in idle) >= 150 - 64
    finally:
        for sock in held:
            sock.close()
    # an unfinished request is dropped after 5 s
    slowloris = connect(port)
    try:
        slowloris.sendall(b'GET /metrics HTTP/1.1\r\nHost: m\r\n')     # and never the end
        slowloris.settimeout(10)
        started = time.monotonic()
        assert answer_of(slowloris) == b''
        assert 4 < time.monotonic() - started < 10
    finally:
        slowloris.close()
    with urllib.request.urlopen('http://127.0.0.1:%d/metrics' % port, timeout=5) as answer:
        assert answer.status == 200
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen('http://127.0.0.1:%d/' % port, timeout=5)
    assert err.value.code == 404
    assert 'Traceback' not in cluster.master.log()


def test_a_port_that_cannot_be_had_stops_the_start(workdir):
    taken = socket.socket()
    taken.bind(('127.0.0.1', 0))
    taken.listen(1)
    try:
        cluster = Cluster(workdir, {'n1': []}, master_extra={
            'metrics_listen': '127.0.0.1:%d' % taken.getsockname()[1]})
        master = Daemon('dpd-masterd', cluster.master_config).start(wait_ready=False)
        assert master.wait() == 1
        assert 'cannot listen on 127.0.0.1:%d (metrics_listen)' % taken.getsockname()[1] \
            in master.log()
    finally:
        taken.close()
