"""Real nodes (a dpd-clientd and a dpd-workerd each) and what is measured with them:
figures 1 to 4 of bench/cluster.py for a handful of nodes."""
import os
import time

from dpd.cluster import protocol, workerfile

from . import BenchError, mono
from .lists import read_json, sha_of, sleep_proc, write_atomically
from .master import Master
from .observe import FileEvents, NotifySocket
from .proc import children_of, command_of
from .results import TARGETS, ms


class RealNode:
    """A node of real daemons: dpd-clientd and (optionally) dpd-workerd."""

    def __init__(self, workdir, name, master, procs):
        self.name, self.procs = name, procs
        self.dir = os.path.join(workdir, name)
        os.mkdir(self.dir, 0o700)
        self.worker_conf = os.path.join(self.dir, 'worker.json')
        self.client_conf = os.path.join(self.dir, 'client.json')
        self.reset_worker_file()
        write_atomically(self.client_conf, {
            'master_stats': master.stats, 'master_updates': master.updates,
            'node_name': name, 'conf_file': self.worker_conf})
        self.worker = self.client = None
        self.starts = 0

    def reset_worker_file(self):
        write_atomically(self.worker_conf, {'procs': []}, mode=0o600)

    def _start(self, program, env_name, config):
        self.starts += 1
        notify = NotifySocket(os.path.join(self.dir, 'notify.%d' % self.starts))
        try:
            started = mono()
            proc = self.procs.start(command_of(env_name, program) + ['-f', config],
                                    os.path.join(self.dir, program + '.log'), notify.env())
            return proc, started, notify.wait_ready(proc, 30, '%s of %s' % (program, self.name))
        finally:
            notify.close()

    def start_worker(self):
        self.worker, _, _ = self._start('dpd-workerd', 'DPD_WORKERD', self.worker_conf)

    def start_client(self):
        """(time exec'd, time READY=1)."""
        self.client, started, ready = self._start('dpd-clientd', 'DPD_CLIENTD',
                                                  self.client_conf)
        return started, ready

    def stop_client(self):
        self.procs.stop(self.client)
        self.client = None

    def stop(self):
        for proc in (self.client, self.worker):
            if proc is not None:
                self.procs.stop(proc)

    def held_sha(self):
        """The sha256 the worker file's record claims, if its procs still match it."""
        doc = read_json(self.worker_conf)
        if not isinstance(doc, dict) or not isinstance(doc.get('procs'), list):
            return None
        record = doc.get(workerfile.RECORD_KEY) or {}
        sha = protocol.body_of(doc['procs'])[1]
        return sha if record.get('sha256') == sha else None

    def running(self):
        """{pid: argv} of the worker's children."""
        return children_of(self.worker.pid) if self.worker else {}


def wait_files(events, expected, deadline):
    """{node: time its worker file held the expected sha}; `expected`: {RealNode: sha}."""
    pending, done = dict(expected), {}
    for node in list(pending):         # already there (a write before we looked)
        if node.held_sha() == pending[node]:
            done[node] = mono()
            del pending[node]
    while pending and mono() < deadline:
        for node, name, seen in events.wait(deadline - mono()):
            if node in pending and name == 'worker.json' and node.held_sha() == pending[node]:
                done[node] = seen
                del pending[node]
    if pending:
        raise BenchError('worker files of %s not updated in time'
                         % ', '.join(n.name for n in pending))
    return done


# ---------------------------------------------------------------------- the run

class RealCluster:
    """The master, its real nodes with their lists, one late node, inotify on them."""

    def __init__(self, opts, workdir, procs, rng):
        self.opts, self.rng = opts, rng
        self.master = Master(workdir, procs, opts, rng)
        names = ['n%d' % i for i in range(1, opts.real + 1)]
        self.lists = {name: [sleep_proc('base', '%d.%d' % (700000 + i, opts.run_id))]
                      for i, name in enumerate(names)}
        self.late_list = [sleep_proc('late', '%d.%d' % (600000, opts.run_id))]
        self.save()
        self.master.start()
        self.nodes = [RealNode(workdir, name, self.master, procs) for name in names]
        self.late = RealNode(workdir, 'late', self.master, procs)
        self.events = FileEvents()
        for node in self.nodes + [self.late]:
            self.events.watch(node.dir, node)

    def save(self):
        return self.master.save(dict(self.lists, late=self.late_list))

    def expected(self):
        return {n: sha_of(self.lists[n.name]) for n in self.nodes}

    def pause(self):
        time.sleep(self.opts.settle + self.rng.random() * 0.5)

    def stop(self):
        self.events.close()
        for node in self.nodes + [self.late]:
            node.stop()
        self.master.stop()


def run_real(opts, results, workdir, procs, rng):
    """N real nodes (client + worker), one late client, one master."""
    cluster = RealCluster(opts, workdir, procs, rng)
    try:
        for node in cluster.nodes:
            node.start_worker()
            node.start_client()
        wait_files(cluster.events, cluster.expected(), mono() + 30)
        time.sleep(1.5)
        real_fanout(opts, results, cluster)
        real_to_running(opts, results, cluster)
        real_late_client(opts, results, cluster)
        real_restart(opts, results, cluster)
    finally:
        cluster.stop()


def real_fanout(opts, results, cluster):
    """Figure 1 with real nodes: a `sleep` added to every node's list."""
    samples = []
    for rep in range(opts.repeat):
        for i, node in enumerate(cluster.nodes):
            cluster.lists[node.name].append(sleep_proc(
                'f%d' % rep, '%d.%d' % (710000 + 100 * rep + i, opts.run_id)))
        saved = cluster.save()
        done = wait_files(cluster.events, cluster.expected(), saved + 20)
        samples.append(max(done.values()) - saved)
        cluster.pause()
    results.add('master file saved → every node\'s worker file updated',
                '%d real' % len(cluster.nodes), [ms(s) for s in samples], 'ms',
                note='real dpd-clientd')
    results.details['real_fanout_s'] = samples


def real_to_running(opts, results, cluster):
    """Figure 2: one process added to one node; until its worker has exec'd it."""
    node = cluster.nodes[0]
    to_file, to_running = [], []
    for rep in range(opts.repeat):
        marker = '%d.%d' % (800000 + rep, opts.run_id)
        cluster.lists[node.name].append(sleep_proc('e%d' % rep, marker))
        expected = sha_of(cluster.lists[node.name])
        saved = cluster.save()
        file_at, run_at = _until_running(cluster.events, node, expected, marker, saved + 20)
        to_running.append(run_at - saved)
        to_file.append((file_at or run_at) - saved)
        cluster.pause()
    n = '1 of %d real' % len(cluster.nodes)
    results.add('master file saved → process running on one node', n,
                [ms(s) for s in to_running], 'ms', TARGETS['to_running'] * 1000,
                key='to_running', note='real dpd-clientd + dpd-workerd')
    results.add('… of which: saved → its worker file written', n, [ms(s) for s in to_file],
                'ms')
    results.details['to_running_s'] = to_running
    results.details['to_running_file_s'] = to_file


def _until_running(events, node, expected, marker, deadline):
    """(time its worker file held `expected` or None, time a child runs `sleep marker`),
    polled every 1 ms."""
    file_at = None
    while mono() < deadline:
        for key, name, seen in events.wait(0.001):
            if key is node and name == 'worker.json' and file_at is None and \
                    node.held_sha() == expected:
                file_at = seen
        if any(argv[1:] == [marker.encode()] for argv in node.running().values()):
            return file_at, mono()
    raise BenchError('process %s not running on %s within 20 s' % (marker, node.name))


def real_late_client(opts, results, cluster):
    """Figure 3: a client started while the master is up, until its worker file is written."""
    late = cluster.late
    expected = sha_of(cluster.late_list)
    from_exec, from_ready = [], []
    for _ in range(opts.repeat):
        late.reset_worker_file()
        started, ready = late.start_client()
        done = wait_files(cluster.events, {late: expected}, started + 20)
        from_exec.append(done[late] - started)
        from_ready.append(done[late] - ready)
        late.stop_client()
        cluster.pause()
    results.add('client started late → worker file written, from exec', 1,
                [ms(s) for s in from_exec], 'ms', TARGETS['late_client'] * 1000,
                key='late_client', note='real dpd-clientd')
    results.add('… same, from the client\'s READY=1', 1, [ms(s) for s in from_ready], 'ms',
                TARGETS['late_client'] * 1000, key='late_client_ready')
    results.details['late_client_from_exec_s'] = from_exec
    results.details['late_client_from_ready_s'] = from_ready


def real_restart(opts, results, cluster):
    """Figure 4 with real nodes: SIGKILL + restart; every worker child keeps its pid."""
    master, nodes = cluster.master, cluster.nodes
    names = [n.name for n in nodes]
    samples, same_pids = [], True
    for _ in range(max(1, opts.restarts)):
        epoch, ok = master.all_in_sync(names)
        if not ok:
            master.wait_in_sync(names, 30)
            epoch, _ = master.all_in_sync(names)
        before = {n.name: sorted(n.running()) for n in nodes}
        killed = master.kill9()
        master.start()
        synced = master.wait_in_sync(names, 30, not_epoch=epoch)
        samples.append(synced - killed)
        after = {n.name: sorted(n.running()) for n in nodes}
        same_pids = same_pids and after == before
    results.add('master SIGKILL + restart → all nodes in-sync (master state file)',
                '%d real' % len(nodes), [ms(s) for s in samples], 'ms')
    results.add('… processes restarted meanwhile', '%d real' % len(nodes),
                'none' if same_pids else 'SOME', '', note='worker children keep their pids')
    results.details['real_restart_s'] = samples
    results.details['real_restart_same_pids'] = same_pids
