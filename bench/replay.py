#!/usr/bin/env python3
"""The master's work for one edit, replayed alone: no sockets, no threads, no clock.

The master-only benchmark (cluster.py --master-only) measures the real master,
and its figure moves with the host: on the 2-core test machine the same work
took 63 ms at one moment and 98 ms a quarter of an hour later. This replays
what the master's watcher and main thread do for an edit of N nodes' lists, in
one process and always the same way, so that a change can be measured on its
own, either in time or, under cachegrind, in instructions (the same count at
every run):

    .venv-test/bin/python bench/replay.py --nodes 1000              # times, ms
    for phase in base load config msgs reports; do
        valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null \\
            .venv-test/bin/python bench/replay.py --phase $phase 2>&1 | grep 'I *refs'
    done                          # each phase's count minus the one before it

Phases, each run after those before it: `base` (the fleet: a master file loaded,
every node's REPORT of its list handled), `load` (the edited file read and
checked: the watcher's `load_master`), `config` (the policy takes it: every
node's new version and STATE), `msgs` (the REPORTs of the new lists made: the
nodes' part, to subtract) and `reports` (the policy handles them: decode, check,
record, ACK). The lists are the benchmark's (bench/clusterbench/lists.py), the
files are written to a temporary directory.
"""
import argparse
import json
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), HERE]

from clusterbench.acknode import WORKER  # noqa: E402
from clusterbench.lists import node_list, running_processes, write_atomically  # noqa: E402

from dpd.cluster import events as ev  # noqa: E402
from dpd.cluster import protocol  # noqa: E402
from dpd.cluster.config import MasterLoader  # noqa: E402
from dpd.cluster.master import MasterPolicy  # noqa: E402
from dpd.cluster.protocol import STATS  # noqa: E402

PHASES = ('base', 'load', 'config', 'msgs', 'reports')
SINCE = 12345.678           # every process's start: the same text at every run


class Replay:
    def __init__(self, nodes, directory):
        self.names = ['sim%05d' % i for i in range(nodes)]
        self.directory = directory
        self.loader, self.policy = MasterLoader(), MasterPolicy('epoch-1', False)
        self.now = 100.0

    def master_file(self, rev):
        path = os.path.join(self.directory, 'master.%d.json' % rev)
        write_atomically(path, {'master_stats': 'tcp://127.0.0.1:7001',
                                'master_updates': 'tcp://127.0.0.1:7002',
                                'nodes': {name: node_list(name, rev, 4) for name in self.names}})
        return path

    def feed(self, event):
        self.now += 0.0001
        return self.policy.handle(event, self.now)

    def reports(self, rev):
        """Every node's REPORT of its list of `rev`, as a client sends it."""
        messages = []
        for name in self.names:
            version = self.policy.nodes[name].target or self.policy.nodes[name].desired
            frames = protocol.report(
                name, 'boot-' + name, '2.0', {'gen': version.gen, 'sha256': version.sha256},
                last_rejected=None, worker=dict(WORKER, config_loaded_at=SINCE),
                processes=running_processes(node_list(name, rev, 4), SINCE), reason='in-sync')
            messages.append(ev.LinkMessage(STATS, (name.encode(),) + tuple(frames)))
        return messages


def run(replay, upto):
    """Each phase up to `upto`: {phase: thread CPU ms}."""
    files = [replay.master_file(0), replay.master_file(1)]
    times, config, messages = {}, None, None
    for phase in PHASES[:PHASES.index(upto) + 1]:
        started = time.thread_time()
        if phase == 'base':
            replay.feed(ev.ConfigLoaded(replay.loader(files[0]), 1000.0))
            for message in replay.reports(0):
                replay.feed(message)
        elif phase == 'load':
            config = replay.loader(files[1])
        elif phase == 'config':
            replay.feed(ev.ConfigLoaded(config, 1001.0))
        elif phase == 'msgs':
            messages = replay.reports(1)
        else:
            for message in messages:
                replay.feed(message)
        times[phase] = round(1000 * (time.thread_time() - started), 1)
    return times


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--nodes', type=int, default=1000)
    ap.add_argument('--phase', choices=PHASES, default='reports', help='the last phase run')
    opts = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix='dpd-replay-') as directory:
        print(json.dumps(run(Replay(opts.nodes, directory), opts.phase)))


if __name__ == '__main__':
    main()
