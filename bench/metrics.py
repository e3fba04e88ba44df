#!/usr/bin/env python3
"""Metrics benchmark (SPEC 6.4): what the metrics cost the worker and the master.

    .venv-test/bin/python bench/metrics.py           # both parts, about a minute
    .venv-test/bin/python bench/metrics.py --processes 1000 --nodes 1000 --per-node 10

a. The worker: CPU per `metrics_file` rewrite with N processes. The worker's own
   policy is given a file of N processes and each is started (the executor's
   answers simulated, as in the policy's unit tests); its snapshot becomes the
   state body as the executor makes it (`state.worker_body`, every record new); then, R times, the
   text is made (`metrics.worker_text`) and the file replaced in a temp dir
   (`safereplace.replace`), and the CPU of each rewrite (time.process_time) is
   taken. The body alone is measured apart: the state file is made from it too.
b. The master: a real `dpd-masterd -f` ($DPD_MASTERD, default: next to this
   interpreter, else bin/) with `metrics_listen` on loopback and a master file of
   N nodes x M processes. One process of simulated nodes (a DEALER each on the
   master's ipc:// stats socket) sends per node a REPORT, gets its STATE, and
   reports that list applied with every process running (restarts, since,
   memory, CPU; a third with a health check). Once /metrics shows every node in
   sync, GET /metrics R times, each on a new connection: the time from connect to
   the last byte of the answer. Then the main thread's share, in-process: the
   text made (`ClusterMetrics.text`) from the master's own state file, from
   nothing and again after one node's report changed.
"""
import argparse
import json
import os
import re
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import zmq  # noqa: E402

from dpd import metrics, safereplace, state  # noqa: E402
from dpd.cluster import protocol  # noqa: E402
from dpd.worker import actions as act, events as ev  # noqa: E402
from dpd.worker.config import parse_worker  # noqa: E402
from dpd.worker.policy import WorkerPolicy  # noqa: E402

TARGET_REWRITE_MS, TARGET_SCRAPE_MS = 20.0, 100.0


def ms(seconds):
    return seconds * 1000.0


def summary(samples):
    ordered = sorted(samples)
    return {'median': statistics.median(ordered),
            'p95': ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))], 'max': ordered[-1]}


# ------------------------------------------------------------------ a. the worker

def worker_snapshot(count):
    """The snapshot of a worker that runs `count` processes, made by its own policy."""
    procs = [{'name': 'proc-%04d' % i, 'run': '/bin/sleep', 'args': ['1000']}
             for i in range(count)]
    policy = WorkerPolicy()
    pending, pid = [ev.ConfigLoaded(parse_worker({'procs': procs}, '/w.json', 'nobody'),
                                    time.time())], 1000
    while pending:
        for action in policy.handle(pending.pop(0), 1.0):
            if isinstance(action, act.ClearTree):
                pending.append(ev.TreeEmptied(action.name))
            elif isinstance(action, act.Spawn):
                pid += 1
                pending.append(ev.ProcessStarted(action.name, pid, (1, pid)))
    policy.handle(ev.UsageSampled({p['name']: (35 << 20, 62.5) for p in procs}), 2.0)
    return policy.snapshot(2.0)


def bench_worker(count, repeat):
    snapshot = worker_snapshot(count)
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, 'diprocd.prom')
        body_cpu, rewrite_cpu = [], []
        for _ in range(repeat):
            started = time.process_time()
            shown = state.WallTimes('name', state.shown_proc)   # new: every record changed
            body = state.worker_body(snapshot, shown.copies(snapshot['procs']))
            middle = time.process_time()
            safereplace.replace(path, metrics.worker_text(body).encode())
            ended = time.process_time()
            body_cpu.append(middle - started)
            rewrite_cpu.append(ended - middle)
        size = os.path.getsize(path)
    return {'processes': count, 'bytes': size, 'rewrite_cpu_ms': summary(map(ms, rewrite_cpu)),
            'state_body_cpu_ms': summary(map(ms, body_cpu))}


# ------------------------------------------------------------------ b. the master

def master_command():
    for candidate in (os.environ.get('DPD_MASTERD'),
                      os.path.join(os.path.dirname(sys.executable), 'dpd-masterd')):
        if candidate and os.access(candidate.split()[0], os.X_OK):
            return candidate.split()
    return [sys.executable, os.path.join(REPO, 'bin', 'dpd-masterd')]


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def get_metrics(port):
    """(seconds from connect to the last byte, the body)."""
    started = time.monotonic()
    with socket.create_connection(('127.0.0.1', port), timeout=30) as sock:
        sock.sendall(b'GET /metrics HTTP/1.1\r\nHost: bench\r\n\r\n')
        chunks = []
        while True:
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
    elapsed = time.monotonic() - started
    head, _, body = b''.join(chunks).partition(b'\r\n\r\n')
    length = re.search(rb'\r\nContent-Length: ([0-9]+)\r\n', head + b'\r\n')
    if not head.startswith(b'HTTP/1.1 200 ') or int(length.group(1)) != len(body):
        raise RuntimeError('GET /metrics: %r, %d bytes' % (head[:300], len(body)))
    return elapsed, body


def reported(names, index):
    since = round(time.time() - 3600, 3)
    return [{'name': name, 'state': 'running', 'pid': 10000 + i, 'restarts': i % 3,
             'since': since, 'health': 'healthy' if i % 3 == 0 else None,
             'memory_bytes': (20 + i) << 20, 'cpu_seconds': 61.25 + index}
            for i, name in enumerate(names)]


def feed_nodes(stats, lists):
    """Every node reports, gets its list, and reports it applied (in sync)."""
    context = zmq.Context()
    dealers = {}
    poller = zmq.Poller()
    for node in lists:
        dealer = context.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.connect(stats)
        dealers[dealer] = node
        poller.register(dealer, zmq.POLLIN)
        dealer.send_multipart(protocol.report(node, 'boot', 'bench', None, processes=[]))
    waiting, deadline = set(dealers), time.monotonic() + 120
    while waiting and time.monotonic() < deadline:
        for dealer, _ in poller.poll(1000):
            frames = dealer.recv_multipart()
            if frames[0] == b'STATE':
                fields = json.loads(frames[1])
                node = dealers[dealer]
                dealer.send_multipart(protocol.report(
                    node, 'boot', 'bench', {'gen': fields['gen'], 'sha256': fields['sha256']},
                    worker={'running': True, 'pid': 4242, 'config_ok': True, 'errors': [],
                            'config_loaded_at': time.time()},
                    processes=reported(lists[node], len(waiting))))
            elif frames[0] == b'ACK':
                waiting.discard(dealer)
    return context, dealers, len(waiting)


def bench_master(nodes, per_node, repeat, workdir):
    lists = {'node-%04d' % n: ['proc-%02d' % i for i in range(per_node)] for n in range(nodes)}
    port, config = free_port(), os.path.join(workdir, 'master.json')
    with open(config, 'w') as f:
        json.dump({'master_stats': 'ipc://%s/stats' % workdir,
                   'master_updates': 'ipc://%s/updates' % workdir,
                   'metrics_listen': '127.0.0.1:%d' % port,
                   'nodes': {node: [{'name': name, 'run': '/bin/sleep', 'args': ['1000']}
                                    for name in names] for node, names in lists.items()}}, f)
    master = subprocess.Popen(master_command() + ['-f', config], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    context = dealers = None
    try:
        _wait(lambda: _answers(port), 30, 'the master to listen')
        context, dealers, lost = feed_nodes('ipc://%s/stats' % workdir, lists)
        in_sync = re.compile(rb'^diprocd_node_in_sync\{[^}]*\} 1$', re.M)
        _wait(lambda: len(in_sync.findall(get_metrics(port)[1])) == nodes, 60,
              'every node in sync at /metrics')
        latencies, size = [], 0
        for _ in range(repeat):
            elapsed, body = get_metrics(port)
            latencies.append(elapsed)
            size = len(body)
        body = state.read(os.path.join(workdir, 'master.state.json'))
    finally:
        master.terminate()
        master.wait(30)
        for dealer in dealers or ():
            dealer.close()
        if context is not None:
            context.term()
    cold, warm = format_cpu(body, repeat)
    return {'nodes': nodes, 'per_node': per_node, 'lost_nodes': lost, 'bytes': size,
            'series': body_lines(body), 'scrape_ms': summary(map(ms, latencies)),
            'format_cpu_ms_cold': cold, 'format_cpu_ms_one_node_changed': warm}


def body_lines(body):
    return metrics.ClusterMetrics().text(body).count('\n')


def format_cpu(body, repeat):
    """The main thread's share, per state write: from nothing, and with one node changed."""
    cold, warm = [], []
    for i in range(max(3, repeat // 4)):
        formatter = metrics.ClusterMetrics()
        started = time.process_time()
        formatter.text(body)
        cold.append(time.process_time() - started)
        node = body['nodes'][i % len(body['nodes'])]
        node['processes'] = [dict(p, restarts=p['restarts'] + 1) for p in node['processes']]
        started = time.process_time()
        formatter.text(body)
        warm.append(time.process_time() - started)
    return summary(map(ms, cold)), summary(map(ms, warm))


def _answers(port):
    try:
        get_metrics(port)
        return True
    except OSError:
        return False


def _wait(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError('timed out waiting for %s' % what)
        time.sleep(0.5)


# ------------------------------------------------------------------ main

def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--processes', type=int, default=1000)
    parser.add_argument('--nodes', type=int, default=1000)
    parser.add_argument('--per-node', type=int, default=10)
    parser.add_argument('--repeat', type=int, default=20)
    parser.add_argument('--json', help='write the figures there too')
    opts = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    worker = bench_worker(opts.processes, opts.repeat)
    with tempfile.TemporaryDirectory(prefix='dpd-metrics-bench-') as workdir:
        master = bench_master(opts.nodes, opts.per_node, opts.repeat, workdir)
    figures = {'worker': worker, 'master': master}
    print(json.dumps(figures, indent=1))
    print(table(worker, master))
    if opts.json:
        with open(opts.json, 'w') as f:
            json.dump(figures, f, indent=1)


def table(worker, master):
    rewrite, scrape = worker['rewrite_cpu_ms'], master['scrape_ms']
    rows = [
        ('metrics_file rewrite, %d processes (%d KiB): CPU' % (
            worker['processes'], worker['bytes'] // 1024), rewrite, TARGET_REWRITE_MS),
        ('… the state body it is made from (shared with the state file)',
         worker['state_body_cpu_ms'], None),
        ('GET /metrics, %d nodes × %d processes (%.1f MiB, %d lines): latency' % (
            master['nodes'], master['per_node'], master['bytes'] / 2 ** 20, master['series']),
         scrape, TARGET_SCRAPE_MS),
        ('… the master formats it, once per state write: CPU from nothing',
         master['format_cpu_ms_cold'], None),
        ('… the same after one node\'s report changed', master['format_cpu_ms_one_node_changed'],
         None),
    ]
    lines = ['| metric | median | p95 | max | target | |', '|---|---:|---:|---:|---:|---|']
    for label, figure, target in rows:
        verdict = '' if target is None else 'pass' if figure['median'] <= target else 'miss'
        lines.append('| %s | %.1f ms | %.1f ms | %.1f ms | %s | %s |' % (
            label, figure['median'], figure['p95'], figure['max'],
            '≤ %g ms' % target if target else '', verdict))
    return '\n'.join(lines)


if __name__ == '__main__':
    main()
