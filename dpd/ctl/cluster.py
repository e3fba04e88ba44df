"""`dpd-ctl cluster MASTER_CONFIG`: one line per node, or per process of one node."""
import sys
import time

from ..cluster.states import node_as_desired
from .status import process_table
from .view import EX_DEGRADED, EX_OK, EX_UNKNOWN, View, emit, table, uptime


def cluster(config_path, as_json, only_node=None, out=sys.stdout):
    view = View(config_path, 'dpd-masterd')
    if view.doc is None:
        return view.emit_unavailable(out, as_json)
    nodes = view.doc.get('nodes', [])
    if only_node is not None:
        nodes = [n for n in nodes if n['node'] == only_node]
        if not nodes:
            emit(out, as_json, {'schema': 1, 'running': True, 'status': EX_UNKNOWN,
                                'error': 'no node %s' % only_node},
                 ['dpd-ctl: no node %s in %s' % (only_node, config_path)])
            return EX_UNKNOWN
    healthy = view.config.get('ok', True) and all(node_as_desired(n) for n in nodes)
    code = EX_OK if healthy else EX_DEGRADED
    rollout = view.doc.get('rollout') if isinstance(view.doc.get('rollout'), dict) else None
    lines = [rollout['line']] if rollout and only_node is None else []
    lines += table([(n['node'], n['state'].upper(), describe_node(n, rollout=rollout))
                    for n in nodes])
    if only_node is not None:
        lines += ['  ' + line for line in process_table(nodes[0].get('processes') or [])]
    elif not nodes:
        lines.append('no nodes')
    lines += view.rejected_config('master file rejected; every node keeps its list:')
    emit(out, as_json, view.json_doc(code, nodes=nodes, rollout=rollout), lines)
    return code


def describe_node(node, now=None, rollout=None):
    now = time.time() if now is None else now
    parts = []
    in_rollout = _rollout_part(node['node'], rollout)
    if in_rollout:
        parts.append(in_rollout)
    desired, applied = node.get('desired'), node.get('applied')
    if desired:
        parts.append('version %d (%d processes)' % (desired['gen'], desired['processes']))
    if applied and desired and applied.get('sha256') != desired['sha256']:
        parts.append('applied %d' % applied.get('gen', 0))
    processes = node.get('processes') or []
    if processes:
        running = sum(1 for p in processes if p.get('state') == 'running')
        parts.append('%d/%d running' % (running, len(processes)))
    if node.get('last_seen'):
        parts.append('seen %s ago' % uptime(max(0, now - node['last_seen'])))
    if node.get('clients', 0) > 1:
        parts.append('%d clients claim this node' % node['clients'])
    rejected = node.get('last_rejected') or {}
    if node['state'] == 'rejected' and rejected.get('reason'):
        parts.append('refused: %s' % rejected['reason'])
    for error in node.get('errors') or []:
        parts.append('master file: %s' % error)
    return ', '.join(parts)


def _rollout_part(name, rollout):
    """Where the node stands in the rollout, unless it is through with it."""
    status = (rollout or {}).get('status', {}).get(name)
    reason = (rollout or {}).get('reasons', {}).get(name)
    if status == 'waiting':
        return 'rollout: waiting for its wave'
    if status == 'serving':
        return 'rollout: in the wave under way'
    if status in ('failed', 'reverted'):
        return 'rollout: %s (%s)' % (status, reason or 'no reason given')
    return None
