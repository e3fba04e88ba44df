"""The options and main: which runs, in which order, and the report at the end."""
import argparse
import os
import platform
import random
import shutil
import signal
import tempfile
import time

import zmq

from . import ROOT, BenchError
from .masteronly import run_master_only
from .proc import Processes, become_subreaper, command_of, loadavg, raise_nofile
from .realnodes import run_real
from .results import Results, report
from .simbench import run_sim
from .simchild import sim_child_main

DESCRIPTION = 'Cluster benchmark: one real dpd-masterd, N nodes, real ZeroMQ sockets on ' \
              'loopback (see bench/cluster.py for how each figure is taken).'


def parser():
    ap = argparse.ArgumentParser(description=DESCRIPTION)
    ap.add_argument('--quick', action='store_true',
                    help='small sizes: 3 real nodes, 50 simulated, 3 repeats, 5 s window')
    ap.add_argument('--master-only', action='store_true',
                    help='the master alone, against N nodes that only acknowledge; one JSON '
                         'object (see bench/clusterbench/masteronly.py)')
    ap.add_argument('--rollout', action='store_true',
                    help='--master-only: then a staged rollout of an edit of every list, '
                         'max_parallel 10%%: the master\'s overhead per wave')
    ap.add_argument('--nodes', help='simulated sizes (200,1000; --master-only: one size, 1000)')
    ap.add_argument('--real', type=int, default=5, help='real nodes (5); 0 skips them')
    ap.add_argument('--repeat', type=int,
                    help='edits / late starts (10; --master-only: 5)')
    ap.add_argument('--restarts', type=int, default=3, help='master restarts (3)')
    ap.add_argument('--window', type=float, default=30.0, help='idle CPU window, s (30)')
    ap.add_argument('--idle-settle', type=float, default=12.0,
                    help='quiet time before the idle window, s (12)')
    ap.add_argument('--settle', type=float, default=1.5, help='pause between runs, s (1.5)')
    ap.add_argument('--procs-per-node', type=int, default=4,
                    help='processes in each simulated node\'s list (4, ~1 KiB body)')
    ap.add_argument('--sim-procs', type=int, default=0,
                    help='processes the simulated nodes are spread over '
                         '(0: one per 250 nodes, at least one per CPU)')
    ap.add_argument('--fsync', choices=('on', 'off', 'both'), default='both',
                    help='simulated nodes\' worker file writes: with fsync (as the client), '
                         'without, or both, one after the other (both)')
    ap.add_argument('--profile-master', metavar='DIR',
                    help='run the master under cProfile; .prof files go to DIR')
    ap.add_argument('--profile-sims', metavar='DIR', help='simulators under cProfile')
    ap.add_argument('--seed', type=int, default=1)
    ap.add_argument('--keep', action='store_true', help='keep the temp dir (logs, files)')
    ap.add_argument('--json', help='results-raw/cluster.json '
                                   '(--master-only: results-raw/cluster-master-only.json)')
    ap.add_argument('--sim-child', metavar='CONFIG', help=argparse.SUPPRESS)
    return ap


def options(argv):
    ap = parser()
    opts = ap.parse_args(argv)
    if opts.nodes is None:
        opts.nodes = '1000' if opts.master_only else '200,1000'
    if opts.repeat is None:
        opts.repeat = 5 if opts.master_only else 10
    if opts.quick:
        opts.nodes, opts.real, opts.repeat, opts.restarts = '50', min(opts.real, 3), 3, 1
        opts.window, opts.idle_settle, opts.settle = 5.0, 2.0, 1.2
    opts.sizes = [int(x) for x in opts.nodes.split(',') if x.strip()]
    if opts.master_only and len(opts.sizes) != 1:
        ap.error('--master-only measures one size: --nodes N')
    if opts.json is None:
        opts.json = os.path.join(ROOT, 'results-raw', 'cluster-master-only.json'
                                 if opts.master_only else 'cluster.json')
    opts.fsync_modes = {'on': [True], 'off': [False], 'both': [True, False]}[opts.fsync]
    opts.run_id = random.Random().randrange(100000, 999999)
    for directory in (opts.profile_master, opts.profile_sims):
        if directory:
            os.makedirs(directory, exist_ok=True)
    return opts


def environment(opts, nofile):
    return {'python': platform.python_version(), 'pyzmq': zmq.__version__,
            'libzmq': zmq.zmq_version(), 'cpus': os.cpu_count(), 'kernel': platform.release(),
            'nofile': nofile, 'masterd': command_of('DPD_MASTERD', 'dpd-masterd'),
            'clientd': command_of('DPD_CLIENTD', 'dpd-clientd'),
            'workerd': command_of('DPD_WORKERD', 'dpd-workerd'),
            'transport': 'tcp://127.0.0.1', 'options': {k: v for k, v in vars(opts).items()
                                                          if k != 'sim_child'}}


def on_sigterm(signum, frame):
    raise KeyboardInterrupt


def main(argv=None):
    opts = options(argv)
    if opts.sim_child:
        return sim_child_main(opts.sim_child)
    signal.signal(signal.SIGTERM, on_sigterm)
    nofile = raise_nofile()
    become_subreaper()
    meta = {'environment': environment(opts, nofile), 'load_before': loadavg(),
            'started': time.strftime('%Y-%m-%d %H:%M:%S')}
    workdir = tempfile.mkdtemp(prefix='dpd-cluster-')
    procs = Processes()
    try:
        if opts.master_only:
            failed = run_master_only(opts, workdir, procs, random.Random(opts.seed), meta)
        else:
            failed = run_all(opts, workdir, procs, meta)
    finally:
        procs.stop_all()
        if not opts.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        elif opts.master_only:
            print('kept: %s' % workdir)
    return 1 if failed else 0


def run_all(opts, workdir, procs, meta):
    """The real nodes, then each simulated size; the report. Returns a failure or None."""
    rng, results, failed = random.Random(opts.seed), Results(), None
    try:
        if opts.real:
            run_real(opts, results, workdir, procs, rng)
        for n in opts.sizes:
            run_sim(n, opts, results, workdir, procs, rng)
    except BenchError as err:
        failed = str(err)
    except KeyboardInterrupt:
        failed = 'interrupted'
    finally:
        procs.stop_all()
    meta['load_after'] = loadavg()
    report(opts, results, meta, failed, workdir)
    return failed
