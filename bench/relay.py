#!/usr/bin/env python3
"""`dpd-ctl restart --node` through a real master, client and worker on this machine
(SPEC 6.3; PERFORMANCE.md: exec'd -> new process running <= 250 ms on loopback).

    sudo python3 bench/relay.py [--runs 30] [--tcp]

Endpoints are ipc:// in a temporary directory, or tcp on 127.0.0.1 with --tcp. The
process records the wall time at which it starts; the figure is that time minus
the time just before dpd-ctl is exec'd (so it includes dpd-ctl's own start, the
master, the client, the worker's stop of the old process and the spawn). Also
reported: until dpd-ctl returns (the new process is running, and said so).
"""
import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

BIN = os.path.dirname(sys.executable)
CHILD = ('import sys, time\n'
         'open(sys.argv[1], "a").write("%.6f\\n" % time.time())\n'
         'time.sleep(100000)\n')


def tool(name):
    path = os.path.join(BIN, name)
    return [path] if os.path.exists(path) else [sys.executable, '-m', {
        'dpd-ctl': 'dpd.ctl.main', 'dpd-workerd': 'dpd.worker.main',
        'dpd-clientd': 'dpd.cluster.clientd', 'dpd-masterd': 'dpd.cluster.masterd'}[name]]


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def write(path, doc, mode=0o644):
    with open(path, 'w') as f:
        json.dump(doc, f)
    os.chmod(path, mode)


def wait(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit('timed out')
        time.sleep(0.01)


def starts(path):
    try:
        with open(path) as f:
            return [float(line) for line in f if line.strip()]
    except OSError:
        return []


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--runs', type=int, default=30)
    ap.add_argument('--tcp', action='store_true', help='tcp on 127.0.0.1, not ipc://')
    args = ap.parse_args()
    d = tempfile.mkdtemp(prefix='dpd-relay-')
    os.chmod(d, 0o755)
    if args.tcp:
        stats, updates = ('tcp://127.0.0.1:%d' % free_port() for _ in range(2))
    else:
        stats, updates = 'ipc://%s/stats' % d, 'ipc://%s/updates' % d
    marks = os.path.join(d, 'starts')
    child = os.path.join(d, 'child.py')
    with open(child, 'w') as f:
        f.write(CHILD)
    proc = {'name': 'p', 'run': sys.executable, 'args': ['-S', child, marks],
            'user': 'root' if os.geteuid() == 0 else None}
    write(os.path.join(d, 'policy.json'), {'allowed_users': ['*'], 'allowed_paths': [d]})
    write(os.path.join(d, 'master.json'), {'master_stats': stats, 'master_updates': updates,
                                           'nodes': {'n1': [proc]}})
    write(os.path.join(d, 'worker.json'), {'procs': []}, 0o600)
    write(os.path.join(d, 'client.json'), {'master_stats': stats, 'master_updates': updates,
                                           'node_name': 'n1',
                                           'conf_file': os.path.join(d, 'worker.json'),
                                           'allowed_users': ['root', 'nobody']})
    policy = ['--policy', os.path.join(d, 'policy.json')]
    daemons = [subprocess.Popen(tool(name) + ['-f'] + extra + [os.path.join(d, config)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
               for name, config, extra in (('dpd-workerd', 'worker.json', policy),
                                           ('dpd-masterd', 'master.json', []),
                                           ('dpd-clientd', 'client.json', policy))]
    try:
        wait(lambda: len(starts(marks)) == 1)
        to_running, to_return = [], []
        ctl = tool('dpd-ctl') + ['restart', '-c', os.path.join(d, 'master.json'),
                                 '--node', 'n1', 'p']
        for _ in range(args.runs):
            before = len(starts(marks))
            t0 = time.time()
            done = subprocess.run(ctl, capture_output=True)
            t1 = time.time()
            if done.returncode != 0:
                raise SystemExit(done.stderr.decode())
            wait(lambda: len(starts(marks)) > before)
            to_running.append((starts(marks)[-1] - t0) * 1000)
            to_return.append((t1 - t0) * 1000)
        result = {'runs': args.runs, 'transport': 'tcp' if args.tcp else 'ipc',
                  'exec_to_running_ms': {'median': round(statistics.median(to_running), 1),
                                         'p95': round(sorted(to_running)[int(0.95 * len(
                                             to_running)) - 1], 1)},
                  'exec_to_return_ms': {'median': round(statistics.median(to_return), 1)},
                  'load': os.getloadavg()[0]}
        print(json.dumps(result, indent=1))
    finally:
        for daemon in reversed(daemons):
            daemon.send_signal(signal.SIGTERM)
        for daemon in daemons:
            daemon.wait(30)
        shutil.rmtree(d, ignore_errors=True)


if __name__ == '__main__':
    main()
