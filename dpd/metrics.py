"""Metrics (SPEC 6.4): the Prometheus text format, version 0.0.4, from state bodies.

Pure: the input is what a daemon writes to its state file (wall-clock times,
already converted), the output is text; the worker's executor writes it to
`metrics_file`, the master's hands it to its HTTP thread. Every family has its
`# HELP` and `# TYPE` lines and all its samples together, as the format wants;
a family with no sample is left out. Label values are escaped (backslash,
double quote, newline) and made valid UTF-8: at the master, process names come
from the nodes' reports, and whatever a peer wrote must still parse.
"""
from .cluster.rollout import STATUSES
from .cluster.states import NODE_STATES
from .worker.lifecycle import RUNNING, STATES

CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8'

# name -> help, in the order of the text; `*_total` are counters, the rest gauges
FAMILIES = {
    'diprocd_process_up': 'Whether the process is running (1) or not (0).',
    'diprocd_process_state': 'The process\'s state: 1 for the current one, 0 for the others.',
    'diprocd_process_restarts_total': 'Restarts of the process since it was defined '
                                      '(kept across a worker restart).',
    'diprocd_process_start_time_seconds': 'When the running process entered the running '
                                          'state, in seconds since the epoch.',
    'diprocd_process_healthy': 'Whether the process passes its health check '
                               '(processes with a check only).',
    'diprocd_process_memory_bytes': 'Memory used by the process\'s whole tree, in bytes.',
    'diprocd_process_cpu_seconds_total': 'CPU time used by the process\'s whole tree, '
                                         'in seconds.',
    'diprocd_config_load_success': 'Whether the last load of the configuration succeeded '
                                   '(0: the last edit was rejected).',
    'diprocd_config_load_timestamp_seconds': 'When the configuration was last loaded '
                                             'successfully, in seconds since the epoch.',
    'diprocd_node_state': 'The node\'s state at the master: 1 for the current one, 0 for '
                          'the others.',
    'diprocd_node_last_seen_timestamp_seconds': 'When the master last heard from the node, '
                                                'in seconds since the epoch.',
    'diprocd_node_in_sync': 'Whether the node runs the list the master file gives it.',
    'diprocd_rollout_nodes': 'Nodes of the last rollout, by their status in it.',
    'diprocd_rollout_halted': 'Whether the last rollout halted (1 until the next edit).',
}
HEADERS = {name: '# HELP %s %s\n# TYPE %s %s\n' % (
    name, text, name, 'counter' if name.endswith('_total') else 'gauge')
    for name, text in FAMILIES.items()}


class Samples:
    """Sample lines by family, joined in FAMILIES' order."""

    def __init__(self):
        self.lines = {name: [] for name in FAMILIES}

    def add(self, family, labels, value):
        """`labels`: the text between the braces (already escaped), '' for none."""
        if labels:
            self.lines[family].append('%s{%s} %s\n' % (family, labels, number(value)))
        else:
            self.lines[family].append('%s %s\n' % (family, number(value)))

    def extend(self, fragments):
        """Lines made earlier ({family: [line, ...]}): a node's processes, unchanged."""
        for family, lines in fragments.items():
            self.lines[family].extend(lines)

    def text(self):
        return ''.join(HEADERS[name] + ''.join(lines)
                       for name, lines in self.lines.items() if lines)


def number(value):
    """A sample value as the format writes it (Go's ParseFloat reads both forms)."""
    if value is True or value is False or isinstance(value, int):
        return '%d' % value
    return repr(float(value))


def label(value):
    """A label value between its double quotes: valid UTF-8, escaped."""
    if not isinstance(value, str):
        value = str(value)
    if not value.isascii():
        value = value.encode('utf-8', 'replace').decode('utf-8')   # lone surrogates: '?'
    if '\\' in value or '"' in value or '\n' in value:
        value = value.replace('\\', '\\\\').replace('"', '\\"').replace('\n', '\\n')
    return value


def is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# ------------------------------------------------------------------ both daemons

def add_process(samples, labels, record):
    """The series of one process (a state-file or REPORT record) under `labels`."""
    state = record.get('state')
    samples.add('diprocd_process_up', labels, state == RUNNING)
    for known in STATES:
        samples.add('diprocd_process_state', '%s,state="%s"' % (labels, known), state == known)
    if state not in STATES and isinstance(state, str):   # a newer node's state: still said
        samples.add('diprocd_process_state', '%s,state="%s"' % (labels, label(state)), 1)
    if is_number(record.get('restarts')):
        samples.add('diprocd_process_restarts_total', labels, record['restarts'])
    if state == RUNNING and is_number(record.get('since')):
        samples.add('diprocd_process_start_time_seconds', labels, record['since'])
    if record.get('health') is not None:
        samples.add('diprocd_process_healthy', labels, record['health'] == 'healthy')
    if is_number(record.get('memory_bytes')):
        samples.add('diprocd_process_memory_bytes', labels, record['memory_bytes'])
    if is_number(record.get('cpu_seconds')):
        samples.add('diprocd_process_cpu_seconds_total', labels, record['cpu_seconds'])


def add_config(samples, labels, ok, loaded_at):
    if isinstance(ok, bool):
        samples.add('diprocd_config_load_success', labels, ok)
    if is_number(loaded_at):
        samples.add('diprocd_config_load_timestamp_seconds', labels, loaded_at)


# ------------------------------------------------------------------ the worker

def worker_text(body):
    """The worker's metrics_file from its state body (state.worker_body)."""
    samples = Samples()
    config = body.get('config') or {}
    add_config(samples, '', config.get('ok'), config.get('loaded_at'))
    for record in body['procs']:
        add_process(samples, 'name="%s"' % label(record['name']), record)
    return samples.text()


# ------------------------------------------------------------------ the master

class ClusterMetrics:
    """The master's `/metrics` from its state body (the master's own config, then
    every node and the processes it reported, each with a `node` label).

    A node's process lines are made again only when its report changed: a
    thousand nodes report every 10 s, and most reports change nothing but the
    time they arrived. (The policy replaces a node's process list at each
    report, never edits it, so an equal list means equal lines.)"""

    def __init__(self):
        self._known = {}        # node name -> (its processes, their lines by family)

    def text(self, body):
        samples = Samples()
        config = body.get('config') or {}
        add_config(samples, '', config.get('ok'), config.get('loaded_at'))
        known = {}
        for node in body['nodes']:
            labels = 'node="%s"' % label(node['node'])
            add_node(samples, labels, node)
            processes = node.get('processes') or []
            hit = self._known.get(node['node'])
            if hit is None or hit[0] != processes:
                hit = (processes, process_lines(labels, processes))
            known[node['node']] = hit
            samples.extend(hit[1])
        self._known = known
        add_rollout(samples, body.get('rollout'))
        return samples.text()


def add_rollout(samples, rollout):
    if not isinstance(rollout, dict):
        return
    statuses = list(rollout['status'].values())
    for status in STATUSES:
        samples.add('diprocd_rollout_nodes', 'rollout="%s",status="%s"' % (
            label(rollout['id']), status), statuses.count(status))
    samples.add('diprocd_rollout_halted', 'rollout="%s"' % label(rollout['id']),
                rollout['halted'] is not None)


def add_node(samples, labels, node):
    state = node.get('state')
    for known in NODE_STATES:
        samples.add('diprocd_node_state', '%s,state="%s"' % (labels, known), state == known)
    if is_number(node.get('last_seen')):
        samples.add('diprocd_node_last_seen_timestamp_seconds', labels, node['last_seen'])
    if node.get('managed'):        # a node outside the master file has nothing to sync
        samples.add('diprocd_node_in_sync', labels, state == 'in-sync')
    worker = node.get('worker') or {}
    add_config(samples, labels, worker.get('config_ok'), worker.get('config_loaded_at'))


def process_lines(labels, processes):
    """{family: text} of a node's reported processes; a name reported twice (by a
    confused or hostile peer) is said once, or the whole answer would be invalid."""
    samples, seen = Samples(), set()
    for record in processes:
        name = label(record.get('name')) if isinstance(record, dict) else None
        if name is None or name in seen:
            continue
        seen.add(name)
        add_process(samples, '%s,name="%s"' % (labels, name), record)
    return {family: [''.join(lines)] for family, lines in samples.lines.items() if lines}
