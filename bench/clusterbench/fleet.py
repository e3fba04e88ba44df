"""The parent's side of the simulated nodes: child processes (simchild.py), each
holding a share of the nodes, asked and answered one JSON line at a time."""
import json
import os
import selectors
import subprocess
import sys
from collections import Counter

from . import ROOT, BenchError, mono

ENTRY = os.path.join(ROOT, 'bench', 'cluster.py')    # started with --sim-child CONFIG


class Fleet:
    """Simulated nodes spread over child processes; `kind`: 'client' (SimNode, the
    client's policy and a worker file) or 'ack' (AckNode, acknowledges only)."""

    def __init__(self, workdir, names, master, procs, opts, kind='client'):
        self.dir = os.path.join(workdir, 'sim')
        os.mkdir(self.dir, 0o700)
        self.names, self.master, self.procs, self.opts = names, master, procs, opts
        self.kind = kind
        self.children = []
        self.next_id = 0

    def start(self, count):
        for k in range(count):
            path = os.path.join(self.dir, 'child%d.json' % k)
            with open(path, 'w') as f:
                json.dump(self._child_config(k, count), f)
            proc = self.procs.start([sys.executable, ENTRY, '--sim-child', path],
                                    os.path.join(self.dir, 'child%d.log' % k),
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            os.set_blocking(proc.stdout.fileno(), False)
            self.children.append({'proc': proc, 'buffer': b''})

    def _child_config(self, k, count):
        cfg = {'kind': self.kind, 'nodes': self.names[k::count], 'dir': self.dir,
               'fsync': True, 'master_stats': self.master.stats,
               'master_updates': self.master.updates}
        if self.opts.profile_sims:
            cfg['profile'] = os.path.join(os.path.abspath(self.opts.profile_sims),
                                          '%s%d.child%d.prof' % (self.kind, len(self.names), k))
        return cfg

    @property
    def pids(self):
        return [child['proc'].pid for child in self.children]

    # -------------------------------------------------------------- asking

    def ask(self, request, timeout):
        """Send `request` to every child; their answers, or BenchError at the deadline."""
        self.next_id += 1
        request = dict(request, id=self.next_id)
        self._tell(request)
        answers = self._collect(self.next_id, mono() + timeout)
        if answers is None:
            self._tell({'cmd': 'cancel', 'id': self.next_id})
            raise BenchError('simulated nodes: no answer to %s within %g s (%s)'
                             % (request['cmd'] + ' ' + str(request.get('what', '')), timeout,
                                self.summary()))
        return answers

    def _tell(self, request):
        line = (json.dumps(request) + '\n').encode()
        for child in self.children:
            child['proc'].stdin.write(line)
            child['proc'].stdin.flush()

    def _collect(self, wanted, deadline):
        answers = {}
        with selectors.DefaultSelector() as selector:
            for k, child in enumerate(self.children):
                selector.register(child['proc'].stdout, selectors.EVENT_READ, k)
            while len(answers) < len(self.children):
                remaining = deadline - mono()
                if remaining <= 0:
                    return None
                for key, _ in selector.select(remaining):
                    for answer in self._lines(key.data):
                        if answer.get('id') == wanted:
                            answers[key.data] = answer
        return [answers[k] for k in sorted(answers)]

    def _lines(self, k):
        child = self.children[k]
        if child['proc'].poll() is not None:
            raise BenchError('a simulator exited (%s); see %s/child%d.log'
                             % (child['proc'].returncode, self.dir, k))
        try:
            child['buffer'] += os.read(child['proc'].stdout.fileno(), 1 << 20)
        except BlockingIOError:
            pass
        lines = child['buffer'].split(b'\n')
        child['buffer'] = lines.pop()
        return [json.loads(line) for line in lines if line]

    # -------------------------------------------------------------- the questions

    def expect_rev(self, rev, procs_per_node):
        """Before the master file of `rev` is saved: each child hashes its nodes' lists
        of `rev`, which wait_rev then only compares (hashed in the window measured,
        they were a fifth of the simulators' CPU there)."""
        self.ask({'cmd': 'expect', 'rev': rev, 'procs': procs_per_node}, 60)

    def wait_rev(self, rev, procs_per_node, timeout):
        """({node: time it reached the list of `rev`: its worker file written (client),
        the master's ACK received (ack)}, {node: when its STATE came})."""
        times, steps = {}, {}
        for answer in self.ask({'cmd': 'wait', 'what': 'rev', 'rev': rev,
                                'procs': procs_per_node}, timeout):
            times.update(answer['times'])
            steps.update(answer['steps'])
        return times, steps

    def set_fsync(self, on):
        self.ask({'cmd': 'fsync', 'on': on}, 10)

    def wait_confirmed(self, not_epoch, after, timeout):
        """{node: first ACK/STATE for what it holds under a new epoch, after `after`}."""
        times = {}
        for answer in self.ask({'cmd': 'wait', 'what': 'confirmed', 'not_epoch': not_epoch,
                                'after': after}, timeout):
            times.update(answer['times'])
        return times

    def stats(self):
        """Counters summed over the children, with their CPU seconds."""
        total, cpu, write_s, status = Counter(), 0.0, 0.0, Counter()
        for answer in self.ask({'cmd': 'stats'}, 30):
            stats = answer['stats']
            total.update(stats['counts'])
            cpu += stats['cpu_s']
            write_s += stats['write_s']
            status.update(stats['status'])
        return {'counts': dict(total), 'cpu_s': round(cpu, 3), 'write_s': round(write_s, 3),
                'status': dict(status)}

    def summary(self):
        try:
            return 'status %s' % self.stats()['status']
        except BenchError:
            return 'no stats'

    def stop(self):
        for child in self.children:
            try:
                child['proc'].stdin.write(b'{"cmd": "quit"}\n')
                child['proc'].stdin.close()
            except (BrokenPipeError, ValueError):
                pass
        for child in self.children:
            try:
                child['proc'].wait(10)      # a clean exit (and its profile, if any)
            except subprocess.TimeoutExpired:
                pass
            self.procs.stop(child['proc'])
