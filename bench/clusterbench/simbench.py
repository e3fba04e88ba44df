"""The measurements with simulated client nodes (figures 1, 4 and 5 of
bench/cluster.py for N = 200, 1000): a cold join, edits of every list, an idle
window, master restarts."""
import math
import os
import statistics
import time
from collections import Counter

from dpd.cluster.config import load_master

from . import mono
from .fleet import Fleet
from .lists import body_bytes, node_list
from .master import Master
from .proc import proc_cpu_seconds, proc_memory_mib, thread_cpu_seconds
from .results import TARGETS, ms


def sim_process_count(opts, n, kind='client'):
    """Real nodes each have their own CPU: spread the simulated ones over every core,
    a process per 250 nodes. Nodes that only acknowledge (--master-only) take at most
    two processes per core: the scheduler gives each process as much of the machine
    as the master, and at 10,000 nodes 40 of them reconnecting after a master
    restart left it so little that it took 13.5 s to be ready (3.0 s beside 4), and
    they needed 7.6 CPU-s per edit where 4 need 5.1."""
    cores = os.cpu_count() or 1
    count = math.ceil(n / 250)
    if kind == 'ack':
        count = min(count, 2 * cores)
    return opts.sim_procs or max(cores, count)


def time_master_load(path):
    """How long the master's own loader takes on this file (parse + validate), here."""
    started = time.perf_counter()
    load_master(path)
    return round(time.perf_counter() - started, 4)


class SimRun:
    """One master and N simulated nodes of `kind`, in their own directory."""

    def __init__(self, n, opts, results, workdir, procs, rng, kind='client'):
        self.n, self.opts, self.results, self.rng, self.kind = n, opts, results, rng, kind
        self.dir = os.path.join(workdir, '%s%d' % ('sim' if kind == 'client' else kind, n))
        os.mkdir(self.dir, 0o700)
        self.master = Master(self.dir, procs, opts, rng)
        self.names = ['sim%04d' % i for i in range(n)]
        self.details = results.details.setdefault('sim%d' % n, {}) if kind == 'client' \
            else {}
        self.fleet = Fleet(self.dir, self.names, self.master, procs, opts, kind)
        self.rev = 0

    def expect_next(self):
        """The next list version, whose hashes the simulators make now: before
        anything is measured, not while the master serves it (fleet.expect_rev)."""
        self.fleet.expect_rev(self.rev + 1, self.opts.procs_per_node)
        return self.rev + 1

    def save(self, rev, **keys):
        """Every node's list at `rev`; the time the master file counts as saved."""
        self.rev = rev
        return self.master.save({name: node_list(name, rev, self.opts.procs_per_node)
                                 for name in self.names}, **keys)

    def start(self):
        """The master on rev 0, then the simulators; the time they all reached rev 0."""
        self.save(0)
        self.details['master_load_s'] = time_master_load(self.master.config)
        self.details['body_bytes'] = body_bytes(node_list(self.names[0], 0,
                                                          self.opts.procs_per_node))
        self.master.start()
        self.details['sim_procs'] = sim_process_count(self.opts, self.n, self.kind)
        started = mono()
        self.fleet.start(self.details['sim_procs'])
        times, _ = self.fleet.wait_rev(0, self.opts.procs_per_node, 120)
        return max(times.values()) - started

    def pause(self):
        time.sleep(self.opts.settle + self.rng.random() * 0.5)

    def stop(self):
        self.fleet.stop()
        self.master.stop()


def run_sim(n, opts, results, workdir, procs, rng):
    """N simulated nodes, one master: cold join, figure 1, figure 5, figure 4."""
    run = SimRun(n, opts, results, workdir, procs, rng)
    try:
        run.details['cold_join_s'] = run.start()
        results.add('cold: all simulators started → every worker file written', '%d sim' % n,
                    ms(run.details['cold_join_s']), 'ms',
                    note='%d sim processes' % run.details['sim_procs'])
        run.master.wait_in_sync(run.names, 60)
        time.sleep(opts.settle)
        for fsync in opts.fsync_modes:
            run.fleet.set_fsync(fsync)
            sim_fanout(run, fsync)
        run.fleet.set_fsync(True)
        sim_idle(run)
        sim_restart(run)
        run.details['master_rss_end_mib'], run.details['master_hwm_mib'] = proc_memory_mib(
            run.master.pid)
        run.details['fleet_end'] = run.fleet.stats()
    finally:
        run.stop()


def sim_fanout(run, fsync):
    """Figure 1, simulated: every node's list changes in one save, `--repeat` times."""
    keys = ('last_node_s', 'median_node_s', 'master_cpu_s', 'last_state_received_s',
            'sim_cpu_s', 'sim_write_wall_s')
    samples = {key: [] for key in keys}
    for _ in range(run.opts.repeat):
        for key, value in one_edit(run).items():
            samples[key].append(value)
        run.pause()
    n = run.n
    target = TARGETS['fanout_1000'] if n >= 1000 else TARGETS['fanout_200']
    mode = 'fsync' if fsync else 'no fsync'
    run.results.add('master file saved → every node\'s worker file updated', '%d sim' % n,
                    [ms(s) for s in samples['last_node_s']], 'ms', target * 1000,
                    key='fanout_%d%s' % (n, '' if fsync else '_nofsync'), note=mode)
    run.details.setdefault('fanout', {})[mode] = samples


def one_edit(run):
    """Every list changed; the times and CPU until every node reached the new rev."""
    pid, fleet = run.master.pid, run.fleet
    rev = run.expect_next()
    cpu_before, fleet_before = proc_cpu_seconds(pid), fleet.stats()
    saved = run.save(rev)
    times, steps = fleet.wait_rev(run.rev, run.opts.procs_per_node, 60)
    master_cpu = proc_cpu_seconds(pid) - cpu_before
    fleet_after = fleet.stats()
    return {'last_node_s': max(times.values()) - saved,
            'median_node_s': statistics.median(times.values()) - saved,
            'master_cpu_s': master_cpu,
            'last_state_received_s': max(t for t in steps.values() if t) - saved,
            'sim_cpu_s': fleet_after['cpu_s'] - fleet_before['cpu_s'],
            'sim_write_wall_s': fleet_after['write_s'] - fleet_before['write_s']}


def idle_window(master, fleet, window):
    """The master's CPU, per thread group, and memory over `window` seconds of idle
    nodes; the simulators' CPU and messages over the same window."""
    pid = master.pid
    fleet_before, cpu_before, started = fleet.stats(), proc_cpu_seconds(pid), mono()
    threads_before = thread_cpu_seconds(pid)
    time.sleep(window)
    cpu, elapsed = proc_cpu_seconds(pid) - cpu_before, mono() - started
    threads = thread_cpu_seconds(pid)
    threads.subtract(threads_before)
    rss, hwm = proc_memory_mib(pid)
    fleet_after = fleet.stats()
    sent = Counter(fleet_after['counts'])
    sent.subtract(fleet_before['counts'])
    return {'idle_window_s': round(elapsed, 2), 'idle_master_cpu_s': round(cpu, 3),
            'idle_master_cpu_pct': round(100 * cpu / elapsed, 2), 'idle_rss_mib': rss,
            'idle_hwm_mib': hwm,
            'idle_master_threads_pct': {k: round(100 * v / elapsed, 2)
                                        for k, v in sorted(threads.items())},
            'idle_sim_cpu_s': round(fleet_after['cpu_s'] - fleet_before['cpu_s'], 3),
            'idle_messages': {k: v for k, v in sent.items() if v}}


def sim_idle(run):
    """Figure 5: the master's CPU and memory while the nodes only heartbeat and report."""
    time.sleep(run.opts.idle_settle)
    idle = idle_window(run.master, run.fleet, run.opts.window)
    n = run.n
    run.results.add('master CPU, idle nodes (REPORTs at the master\'s intervals)',
                    '%d sim' % n,
                    idle['idle_master_cpu_pct'], '% of a core', TARGETS['cpu_pct'],
                    key='cpu_%d' % n, note='%.0f s window' % idle['idle_window_s'])
    run.results.add('master RSS, nodes connected', '%d sim' % n, round(idle['idle_rss_mib'], 1),
                    'MiB', TARGETS['rss_mib'], key='rss_%d' % n)
    run.details.update(idle)


def restart_once(run, fleet_counter, with_state_file=True):
    """SIGKILL + restart of the master: {last_node_s: until every node confirmed it
    holds its list under the new epoch, first_node_s, master_ready_s: its READY=1,
    state_file_s: until its state file lists all in-sync (or None), added: how much
    the nodes added to `fleet_counter` meanwhile, states: STATEs they received}."""
    epoch, _ = run.master.state()
    before = run.fleet.stats()['counts']
    killed = run.master.kill9()
    _, ready = run.master.start()
    confirmed = run.fleet.wait_confirmed(epoch, killed, 60)
    times = {'last_node_s': max(confirmed.values()) - killed,
             'first_node_s': min(confirmed.values()) - killed,
             'master_ready_s': ready - killed, 'state_file_s': None}
    if with_state_file:
        times['state_file_s'] = run.master.wait_in_sync(run.names, 60, not_epoch=epoch) - killed
    time.sleep(run.opts.settle)
    after = run.fleet.stats()['counts']
    times['added'] = after.get(fleet_counter, 0) - before.get(fleet_counter, 0)
    times['states'] = after.get('recv:STATE', 0) - before.get('recv:STATE', 0)
    return times


def sim_restart(run):
    """Figure 4, simulated: SIGKILL + restart; until every node is confirmed again."""
    if not run.opts.restarts:
        return
    restarts = []
    for _ in range(run.opts.restarts):
        restarts.append(restart_once(run, 'writes'))
        time.sleep(run.opts.settle)
    at_nodes = [r['last_node_s'] for r in restarts]
    at_master = [r['state_file_s'] for r in restarts]
    writes, states = [r['added'] for r in restarts], [r['states'] for r in restarts]
    n = run.n
    run.results.add('master SIGKILL + restart → all nodes confirmed in sync (ACK, new epoch)',
                    '%d sim' % n, [ms(s) for s in at_nodes], 'ms', TARGETS['restart'] * 1000,
                    key='restart_%d' % n)
    run.results.add('… same, master state file lists all in-sync', '%d sim' % n,
                    [ms(s) for s in at_master], 'ms', TARGETS['restart'] * 1000)
    run.results.add('… worker files rewritten meanwhile (a restart)', '%d sim' % n, sum(writes),
                    'files', 0, key='restart_writes_%d' % n,
                    note='%d STATE received' % sum(states))
    run.details.update(restart_confirmed_s=at_nodes, restart_master_state_s=at_master,
                       restart_writes=writes, restart_states=states)
