"""The results: rows of the markdown table, details for the JSON, the summary lines."""
import json
import math
import os
import statistics

TARGETS = {'fanout_200': 0.3, 'fanout_1000': 1.0, 'to_running': 0.1, 'late_client': 0.1,
           'restart': 3.0, 'cpu_pct': 5.0, 'rss_mib': 100.0}


def quantiles(samples):
    """(median, p95) by nearest rank; (None, None) when empty."""
    if not samples:
        return None, None
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def ms(seconds):
    return round(seconds * 1000, 1)


class Results:
    def __init__(self):
        self.rows = []
        self.details = {}

    def add(self, metric, n, samples, unit, target=None, key=None, note=''):
        """One table row. `samples`: a list (median and p95 shown) or a single value."""
        many = isinstance(samples, list)
        median, p95 = quantiles(samples) if many else (samples, None)
        self.rows.append({'metric': metric, 'n': n, 'samples': samples if many else None,
                          'value': None if many else samples, 'median': median, 'p95': p95,
                          'unit': unit, 'target': target, 'verdict': verdict(median, p95, target),
                          'key': key, 'note': note})

    def table(self):
        lines = ['| metric | N | measured | target | result |', '|---|---:|---:|---:|---|']
        lines.extend(_table_line(row) for row in self.rows)
        return '\n'.join(lines)


def verdict(median, p95, target):
    if target is None or median is None:
        return ''
    if median > target:
        return 'MISS'
    return 'pass (p95 over)' if p95 is not None and p95 > target else 'pass'


def _table_line(row):
    if row['samples'] is not None:
        measured = '%s / %s %s (median / p95 of %d)' % (
            fmt(row['median']), fmt(row['p95']), row['unit'], len(row['samples']))
    else:
        measured = '%s %s' % (fmt(row['value']), row['unit'])
    target = '≤ %s %s' % (fmt(row['target']), row['unit']) if row['target'] is not None \
        else '—'
    note = ' (%s)' % row['note'] if row['note'] else ''
    return '| %s%s | %s | %s | %s | %s |' % (row['metric'], note, row['n'], measured, target,
                                            row['verdict'])


def fmt(value):
    if value is None:
        return '—'
    if isinstance(value, str):
        return value
    if value >= 100:
        return '%.0f' % value
    if value >= 10:
        return '%.1f' % value
    return '%.3g' % value


def report(opts, results, meta, failed, workdir):
    """The table and summary lines on stdout, everything in the JSON file."""
    print(results.table())
    print()
    print(environment_line(meta))
    for n in opts.sizes:
        for line in fanout_lines(n, results.details.get('sim%d' % n, {})):
            print(line)
    if failed:
        print('\nFAILED: %s' % failed)
    if opts.keep:
        print('kept: %s' % workdir)
    write_json(opts.json, {'meta': meta, 'failed': failed, 'rows': results.rows,
                           'details': results.details})
    print('JSON: %s' % opts.json)


def environment_line(meta):
    env = meta['environment']
    return ('load average (1/5/15 min) before: %s, after: %s; %d CPUs; python %s, pyzmq %s, '
            'libzmq %s; transport tcp://127.0.0.1' % (
                ' '.join(map(str, meta['load_before'])), ' '.join(map(str, meta['load_after'])),
                env['cpus'], env['python'], env['pyzmq'], env['libzmq']))


def fanout_lines(n, d):
    for mode, f in d.get('fanout', {}).items():
        yield ('sim %d, %s: %d simulator processes; master file load here %.3f s; body %d B;'
               ' per change (medians): last STATE in %.2f s, last '
               'file %.2f s; master CPU %.2f s, simulators\' CPU %.2f s, simulators\' wall '
               'time in worker file writes %.2f s' % (
                   n, mode, d['sim_procs'], d['master_load_s'], d['body_bytes'],
                   statistics.median(f['last_state_received_s']),
                   statistics.median(f['last_node_s']),
                   statistics.median(f['master_cpu_s']), statistics.median(f['sim_cpu_s']),
                   statistics.median(f['sim_write_wall_s'])))


def write_json(path, doc):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, 'w') as f:
        json.dump(doc, f, indent=1)
