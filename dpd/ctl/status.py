"""`dpd-ctl status WORKER_CONFIG`: one line per process of a worker."""
import sys
import time

from ..worker.lifecycle import as_desired, exit_text
from .view import EX_DEGRADED, EX_OK, View, clock, emit, table, uptime

HIDDEN = ('definition', 'starts', 'fingerprint', 'started')   # for the next worker only


def status(config_path, as_json, out=sys.stdout):
    view = View(config_path, 'dpd-workerd')
    if view.doc is None:
        return view.emit_unavailable(out, as_json)
    procs = view.doc.get('procs', [])
    code = EX_OK if view.config.get('ok', True) and all(map(as_desired, procs)) else EX_DEGRADED
    lines = process_table(procs)
    if not procs:
        lines.append('no processes configured')
    lines += view.rejected_config('configuration rejected; the processes follow the last '
                                  'valid file:')
    emit(out, as_json, view.json_doc(code, processes=[_public(p) for p in procs]), lines)
    return code


def _public(proc):
    return {key: value for key, value in proc.items() if key not in HIDDEN}


def process_table(procs):
    return table([(p['name'], p['state'].upper(), describe(p)) for p in procs])


def describe(proc, now=None):
    now = time.time() if now is None else now
    parts, last_exit = [], proc.get('last_exit')
    if proc['state'] in ('running', 'stopping', 'starting') and proc.get('pid'):
        parts.append('pid %d' % proc['pid'])
        if proc['state'] == 'running' and proc.get('since'):
            parts.append('uptime %s' % uptime(now - proc['since']))
        parts.extend(usage(proc))
    parts.extend(readiness(proc))
    parts.append('restarts %d' % (proc.get('restarts') or 0))
    if last_exit:
        parts.append('last exit %s at %s' % (exit_text(last_exit), clock(last_exit.get('at'))))
    if proc.get('error'):
        parts.append('error: %s' % proc['error'])
    if proc.get('next_start'):
        parts.append('next start in %s' % uptime(max(0, proc['next_start'] - now)))
    return ', '.join(parts)


def readiness(proc):
    """`healthy`, `unhealthy (REASON)`, the process's STATUS= text, what it waits for."""
    parts = []
    if proc.get('health') == 'unhealthy':
        parts.append('unhealthy (%s)' % (proc.get('health_error') or '?'))
    elif proc.get('health'):
        parts.append(proc['health'])
    if proc.get('status_text'):
        parts.append(proc['status_text'])
    if proc.get('waiting_for'):
        parts.append('waiting for %s' % ', '.join(proc['waiting_for']))
    return parts


def usage(proc):
    """`mem 35.2M`, `cpu 0:01:02`: of the whole tree, where known."""
    parts = []
    if isinstance(proc.get('memory_bytes'), int):
        parts.append('mem %s' % size(proc['memory_bytes']))
    if isinstance(proc.get('cpu_seconds'), (int, float)):
        parts.append('cpu %s' % uptime(proc['cpu_seconds']))
    return parts


def size(count):
    for unit, scale in (('G', 1 << 30), ('M', 1 << 20), ('K', 1 << 10)):
        if count >= scale:
            return '%.1f%s' % (count / scale, unit)
    return '%dB' % count
