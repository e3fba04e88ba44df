"""--master-only: the master measured alone, against nodes that only acknowledge
(acknode.py), so the simulators' own work stays small on a 2-core machine.

One JSON object, exactly these keys (everything else under "details"):

  nodes                         N
  master_cpu_ms_per_node_edit   the master's utime+stime (all threads, /proc/PID/stat)
                                from just before the save (rename) of an edit that
                                changes every node's list until the last node received
                                the master's ACK for the new sha256, divided by N;
                                median over --repeat edits (default 5). It includes the
                                periodic REPORTs handled meanwhile; details:
                                edits[].master_cpu_s_to_settled goes on to 2.5 s after
                                the save (the state file, written at most every 2 s)
  fanout_s                      save -> the last node received the ACK for its new list:
                                the ACK is the master's answer to the REPORT with the new
                                sha256, so the master had received and recorded it
                                (median over the edits)
  idle_cpu_pct                  the master's CPU over --window s with N idle nodes
                                (a REPORT every report_ivl +-20 %: 10 s up to 500 nodes,
                                N / 50 s beyond, at most 60 s, as the master's ACK says;
                                its HUGZ go to no subscriber), % of a core
  rss_mib                       the master's VmRSS at the end of that window, after the edits
  restart_resync_s              SIGKILL -> the last node confirmed under the new epoch (an
                                ACK, or a STATE equal to what it holds); median of --restarts
  restarted_processes           STATEs with another sha256 than the node held, received
                                during the restarts: each would have made a client rewrite
                                its worker file (and its worker restart processes)
"""
import json
import statistics
import time

from dpd.cluster.staged import STABLE_FOR

from . import BenchError, mono
from .proc import loadavg, proc_cpu_seconds, thread_cpu_seconds
from .results import Results, fmt, quantiles, verdict, write_json
from .simbench import SimRun, idle_window, restart_once

TARGETS = {'master_cpu_ms_per_node_edit': 0.2, 'fanout_s': 1.0, 'idle_cpu_pct': 5.0,
           'rss_mib': 100.0, 'restart_resync_s': 3.0, 'restarted_processes': 0}
ROWS = (('master_cpu_ms_per_node_edit', 'master CPU per node per edit (every list changed)',
         'ms'),
        ('fanout_s', 'master file saved → all nodes acknowledged (ACK of the new sha256)', 's'),
        ('idle_cpu_pct', 'master CPU, idle nodes (REPORTs at the master\'s intervals)',
         '% of a core'),
        ('rss_mib', 'master RSS, nodes connected, after the edits', 'MiB'),
        ('restart_resync_s', 'master SIGKILL + restart → all confirmed in sync (new epoch)',
         's'),
        ('restarted_processes', 'lists rewritten during the restarts (STATE ≠ held)',
         'lists'))
SETTLED_AFTER = 2.5     # the master's state file is written at most every 2 s: its tail


def run_master_only(opts, workdir, procs, rng, meta):
    """Measure; write the JSON to opts.json and print the table. Returns a failure text
    or None."""
    n = opts.sizes[0]
    run = SimRun(n, opts, Results(), workdir, procs, rng, kind='ack')
    figures, details = dict.fromkeys(TARGETS), {'meta': meta, 'failed': None}
    try:
        details['cold_join_s'] = run.start()
        details['sim_procs'] = run.details['sim_procs']
        details['master_load_s'] = run.details['master_load_s']
        details['body_bytes'] = run.details['body_bytes']
        time.sleep(opts.settle)
        measure_edits(run, figures, details)
        measure_idle(run, figures, details)
        measure_restarts(run, figures, details)
        if opts.rollout:
            measure_rollout(run, details)
        details['fleet_end'] = run.fleet.stats()
    except BenchError as err:
        details['failed'] = str(err)
    except KeyboardInterrupt:
        details['failed'] = 'interrupted'
    except Exception as err:
        details['failed'] = '%s: %s' % (type(err).__name__, err)
        raise
    finally:
        run.stop()
        meta['load_after'] = loadavg()
        write_output(opts, n, figures, details)
    return details['failed']


# ---------------------------------------------------------------------- the edits

def measure_edits(run, figures, details):
    edits = []
    for _ in range(run.opts.repeat):
        edits.append(one_acked_edit(run))
        time.sleep(run.opts.settle + run.rng.random() * 0.5)
    n = run.n
    per_node = [1000 * e['master_cpu_s'] / n for e in edits]
    figures['master_cpu_ms_per_node_edit'] = round(statistics.median(per_node), 4)
    figures['fanout_s'] = round(statistics.median(e['last_ack_s'] for e in edits), 4)
    details['edits'] = edits
    details['master_cpu_ms_per_node_edit_samples'] = [round(x, 4) for x in per_node]


def one_acked_edit(run):
    """Every list changed; the master's CPU until all ACKs came, then until it settled."""
    pid, rev = run.master.pid, run.expect_next()
    fleet_before = run.fleet.stats()
    threads_before, cpu_before = thread_cpu_seconds(pid), proc_cpu_seconds(pid)
    saved = run.save(rev)
    times, steps = run.fleet.wait_rev(run.rev, run.opts.procs_per_node, 60)
    cpu_acked, acked_at = proc_cpu_seconds(pid) - cpu_before, mono()
    threads = thread_cpu_seconds(pid)
    threads.subtract(threads_before)
    fleet_acked = run.fleet.stats()
    time.sleep(max(0.0, saved + max(SETTLED_AFTER, acked_at - saved + 0.5) - mono()))
    cpu_settled, settled = proc_cpu_seconds(pid) - cpu_before, mono() - saved
    fleet_after = run.fleet.stats()
    return {'last_ack_s': round(max(times.values()) - saved, 4),
            'median_ack_s': round(statistics.median(times.values()) - saved, 4),
            'last_state_received_s': _last(steps, saved),
            'master_cpu_s': round(cpu_acked, 3),
            'master_threads_cpu_s': {k: round(v, 3) for k, v in sorted(threads.items())},
            'master_cpu_s_to_settled': round(cpu_settled, 3),
            'settled_window_s': round(settled, 2),
            'sim_cpu_s': round(fleet_acked['cpu_s'] - fleet_before['cpu_s'], 3),
            'sim_cpu_s_to_settled': round(fleet_after['cpu_s'] - fleet_before['cpu_s'], 3)}


def _last(steps, since):
    """The last STATE's arrival after `since`."""
    times = [t for t in steps.values() if t and t >= since]
    return round(max(times) - since, 4) if times else None


# ---------------------------------------------------------------------- idle, restarts

def measure_idle(run, figures, details):
    time.sleep(run.opts.idle_settle)
    idle = idle_window(run.master, run.fleet, run.opts.window)
    figures['idle_cpu_pct'] = idle['idle_master_cpu_pct']
    figures['rss_mib'] = round(idle['idle_rss_mib'], 1)
    idle['idle_sim_cpu_pct'] = round(100 * idle['idle_sim_cpu_s'] / idle['idle_window_s'], 2)
    details['idle'] = idle


def measure_restarts(run, figures, details):
    if not run.opts.restarts:
        return
    restarts = []
    for _ in range(run.opts.restarts):
        restarts.append(restart_once(run, 'state-new'))
        time.sleep(run.opts.settle)
    figures['restart_resync_s'] = round(statistics.median(r['last_node_s'] for r in restarts), 4)
    figures['restarted_processes'] = sum(r['added'] for r in restarts)
    details['restarts'] = [{k: round(v, 4) if isinstance(v, float) else v
                            for k, v in r.items()} for r in restarts]


# ---------------------------------------------------------------------- a staged rollout

ROLLOUT = {'max_parallel': '10%', 'wait_ready': 60}


def measure_rollout(run, details):
    """An edit of every list, served in 10 waves; the nodes report ready at once.
    A wave ends when its last node has looked ready for STABLE_FOR: the overhead
    of a wave is what the next one's first STATE takes beyond that (the node's
    REPORT, the master's verdict and tick, the next wave's 100 STATEs)."""
    pid, rev = run.master.pid, run.expect_next()
    cpu_before = proc_cpu_seconds(pid)
    saved = run.save(rev, rollout=ROLLOUT)
    times, steps = run.fleet.wait_rev(run.rev, run.opts.procs_per_node, 180)
    cpu = proc_cpu_seconds(pid) - cpu_before
    waves = [run.names[i:i + run.n // 10] for i in range(0, run.n, run.n // 10)]
    received = [[steps[n] for n in wave] for wave in waves]
    gaps = [min(received[k + 1]) - max(received[k]) - STABLE_FOR
            for k in range(len(waves) - 1)]
    spreads = [max(r) - min(r) for r in received]
    details['rollout'] = {
        'waves': len(waves), 'total_s': round(max(times.values()) - saved, 3),
        'overhead_per_wave_ms': round(1000 * statistics.median(gaps), 1),
        'overhead_per_wave_ms_max': round(1000 * max(gaps), 1),
        'wave_send_spread_ms': round(1000 * statistics.median(spreads), 1),
        'master_cpu_ms_per_wave': round(1000 * cpu / len(waves), 1),
        'stable_for_s': STABLE_FOR}
    print('rollout of %d nodes in %d waves: %.1f s in all; overhead per wave (next wave\'s '
          'first STATE - last STATE - %g s): median %.1f ms, max %.1f ms (target 50 ms); a '
          'wave\'s STATEs arrive within %.1f ms; master CPU %.1f ms per wave' % (
              run.n, len(waves), details['rollout']['total_s'], STABLE_FOR,
              details['rollout']['overhead_per_wave_ms'],
              details['rollout']['overhead_per_wave_ms_max'],
              details['rollout']['wave_send_spread_ms'],
              details['rollout']['master_cpu_ms_per_wave']))


# ---------------------------------------------------------------------- output

def write_output(opts, n, figures, details):
    doc = dict({'nodes': n}, **figures, details=details)
    write_json(opts.json, doc)
    print(table(n, figures))
    print()
    print(summary_line(n, details))
    if details['failed']:
        print('\nFAILED: %s' % details['failed'])
    print('JSON: %s' % opts.json)


def table(n, figures):
    lines = ['| metric (master only, %d acknowledging nodes) | measured | target | result |' % n,
             '|---|---:|---:|---|']
    for key, label, unit in ROWS:
        value, target = figures[key], TARGETS[key]
        if key == 'fanout_s' and n < 1000:
            target = 0.3
        lines.append('| %s | %s %s | ≤ %s %s | %s |' % (label, fmt(value), unit, fmt(target),
                                                       unit, verdict(value, None, target)))
    return '\n'.join(lines)


def summary_line(n, details):
    edits = details.get('edits') or []
    if not edits:
        return '%d nodes: no edit measured' % n
    last_state, _ = quantiles([e['last_state_received_s'] or 0 for e in edits])
    sim_cpu, _ = quantiles([e['sim_cpu_s'] for e in edits])
    idle = details.get('idle', {})
    return ('%d nodes over %d simulator processes; per edit (medians): last STATE in %.2f s, '
            'simulators\' CPU %.2f s; idle: simulators %.1f %% of a core; master threads %s' % (
                n, details.get('sim_procs', 0), last_state, sim_cpu,
                idle.get('idle_sim_cpu_pct', 0.0),
                json.dumps(idle.get('idle_master_threads_pct', {}))))
