"""The real dpd-masterd under test: its file, its start, its kill, its state file."""
import os
import sys
import time
from collections import Counter

from . import ROOT, BenchError, mono
from .lists import read_json, write_atomically
from .observe import NotifySocket
from .proc import command_of, free_ports


class Master:
    def __init__(self, workdir, procs, opts, rng):
        self.dir = os.path.join(workdir, 'master')
        os.mkdir(self.dir, 0o700)
        self.procs, self.opts = procs, opts
        self.config = os.path.join(self.dir, 'master.json')
        self.state_path = os.path.join(self.dir, 'master.state.json')
        stats, updates = free_ports(2, rng)
        self.stats = 'tcp://127.0.0.1:%d' % stats
        self.updates = 'tcp://127.0.0.1:%d' % updates
        self.proc = None
        self.starts = 0

    @property
    def pid(self):
        return self.proc.pid

    def save(self, nodes, **keys):
        """Replace the master file (`keys`: more top-level keys, such as rollout);
        the time it counts as saved."""
        return write_atomically(self.config, dict({'master_stats': self.stats,
                                                   'master_updates': self.updates,
                                                   'nodes': nodes}, **keys))

    def argv(self):
        if self.opts.profile_master:   # this checkout's master, with our interpreter
            return [sys.executable, '-c', PROFILE_WRAPPER, '-f', self.config]
        return command_of('DPD_MASTERD', 'dpd-masterd') + ['-f', self.config]

    def start(self, timeout=60.0):
        """(time exec'd, time it said READY=1)."""
        self.starts += 1
        notify = NotifySocket(os.path.join(self.dir, 'notify.%d' % self.starts))
        env = notify.env()
        if self.opts.profile_master:
            env['DPD_BENCH_PROFILE'] = os.path.join(
                os.path.abspath(self.opts.profile_master), 'master')
            env['PYTHONPATH'] = os.pathsep.join(filter(None, [ROOT, env.get('PYTHONPATH')]))
        try:
            started = mono()
            self.proc = self.procs.start(self.argv(), os.path.join(self.dir, 'master.log'), env)
            return started, notify.wait_ready(self.proc, timeout, 'dpd-masterd')
        finally:
            notify.close()

    def kill9(self):
        killed = mono()
        self.procs.kill9(self.proc)
        return killed

    def stop(self):
        if self.proc is not None:
            self.procs.stop(self.proc)

    def state(self):
        """(epoch, {node: state}) from the master's state file."""
        doc = read_json(self.state_path) or {}
        return doc.get('epoch'), {n.get('node'): n.get('state') for n in doc.get('nodes', [])}

    def all_in_sync(self, names):
        epoch, states = self.state()
        return epoch, all(states.get(name) == 'in-sync' for name in names)

    def wait_in_sync(self, names, timeout, not_epoch=None, interval=0.025):
        """The time the state file first lists every node in `names` in-sync (under an
        epoch other than `not_epoch`)."""
        deadline = mono() + timeout
        while mono() < deadline:
            epoch, ok = self.all_in_sync(names)
            if ok and epoch is not None and epoch != not_epoch:
                return mono()
            time.sleep(interval)
        _, states = self.state()
        raise BenchError('master state: %s (of %d nodes) after %g s' % (
            dict(Counter(states.get(n) for n in names)), len(names), timeout))


# The master under cProfile (--profile-master DIR): its main thread and its zmq
# thread, one .prof file each, written when it exits on SIGTERM. It runs this
# checkout's dpd with the benchmark's own interpreter (not $DPD_MASTERD).
PROFILE_WRAPPER = r'''
import cProfile, os, sys
from dpd.cluster import link as zmqlink, masterd
out, profiles = os.environ['DPD_BENCH_PROFILE'], []
original_run = zmqlink.ZmqLink.run
def run(self):
    profile = cProfile.Profile(); profiles.append(('zmq', profile)); profile.enable()
    try:
        original_run(self)
    finally:
        profile.disable()
zmqlink.ZmqLink.run = run
main = cProfile.Profile(); profiles.append(('main', main))
sys.argv[0] = 'dpd-masterd'
main.enable()
try:
    masterd.main(sys.argv[1:])
finally:
    main.disable()
    for name, profile in profiles:
        profile.dump_stats('%s.%d.%s.prof' % (out, os.getpid(), name))
'''
