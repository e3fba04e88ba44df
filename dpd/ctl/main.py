"""dpd-ctl: the operator's tool. Reads state files; never talks to a daemon.

Exit statuses (LSB, plus 150): 0 all as desired; 3 daemon not running;
4 state unknown (state file missing or unreadable while the daemon runs);
150 running, but something is not as desired.
"""
import argparse
import os
import sys
import time

from .. import __version__, jsonfile, state
from ..config import daemon_files
from ..daemon import is_locked
from ..worker.lifecycle import SETTLED_OK

EX_OK, EX_NOT_RUNNING, EX_UNKNOWN, EX_DEGRADED = 0, 3, 4, 150


def load_running_state(config_path, program):
    """(exit status, state doc or None, message) for a daemon's config."""
    lock, state_path = daemon_files(config_path)
    if not is_locked(lock):
        return EX_NOT_RUNNING, None, '%s is not running (%s)' % (program, config_path)
    try:
        return EX_OK, state.read(state_path), None
    except (OSError, ValueError) as err:
        return EX_UNKNOWN, None, '%s runs, but its state is unknown: %s: %s' % (
            program, state_path, getattr(err, 'strerror', None) or err)


# ------------------------------------------------------------------ status

def as_desired(proc):
    return proc['state'] in SETTLED_OK and (proc['state'] != 'exited' or not proc['restart'])


def status(config_path, as_json, out=sys.stdout):
    code, doc, message = load_running_state(config_path, 'dpd-workerd')
    if doc is None:
        _emit(out, as_json, {'schema': 1, 'running': code != EX_NOT_RUNNING, 'status': code,
                             'error': message}, [message])
        return code
    procs, config = doc.get('procs', []), doc.get('config', {})
    healthy = config.get('ok', True) and all(as_desired(p) for p in procs)
    code = EX_OK if healthy else EX_DEGRADED
    lines = _process_table(procs)
    if not procs:
        lines.append('no processes configured')
    lines += _rejected_config(config, 'configuration rejected; the processes follow the last '
                                      'valid file:')
    _emit(out, as_json, _running_doc(doc, code, config, processes=[_public(p) for p in procs]),
          lines)
    return code


def _public(proc):
    hidden = ('definition', 'starts', 'fingerprint', 'started')
    return {key: value for key, value in proc.items() if key not in hidden}


def describe(proc, now=None):
    now = time.time() if now is None else now
    parts, last_exit = [], proc.get('last_exit')
    if proc['state'] in ('running', 'stopping', 'starting') and proc.get('pid'):
        parts.append('pid %d' % proc['pid'])
        if proc['state'] == 'running' and proc.get('since'):
            parts.append('uptime %s' % uptime(now - proc['since']))
    if proc.get('restarts'):
        parts.append('restarts %d' % proc['restarts'])
    if last_exit:
        parts.append('last exit %s at %s' % (exit_text(last_exit), _clock(last_exit.get('at'))))
    if proc.get('error'):
        parts.append('error: %s' % proc['error'])
    if proc.get('next_start'):
        parts.append('next start in %s' % uptime(max(0, proc['next_start'] - now)))
    return ', '.join(parts)


def exit_text(last_exit):
    if last_exit.get('signal'):
        return 'signal %d' % last_exit['signal']
    if last_exit.get('code') is not None:
        return 'status %d' % last_exit['code']
    return 'unknown'


def uptime(seconds):
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    clock = '%d:%02d:%02d' % (rest // 3600, rest // 60 % 60, rest % 60)
    return '%d day%s, %s' % (days, '' if days == 1 else 's', clock) if days else clock


def _clock(wall):
    if wall is None:
        return '?'
    return time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(wall))


def _table(rows):
    if not rows:
        return []
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    return [('%-*s  %-*s  %s' % (widths[0], a, widths[1], b, c)).rstrip() for a, b, c in rows]


def _emit(out, as_json, doc, lines):
    if as_json:
        out.write(jsonfile.dumps(doc, indent=1))
    else:
        out.write(''.join(line + '\n' for line in lines))


# ------------------------------------------------------------------ cluster

NODE_NOT_AS_DESIRED = ('lagging', 'rejected', 'stale', 'never-seen')


def node_as_desired(node):
    return (node['state'] not in NODE_NOT_AS_DESIRED and not node.get('errors')
            and all(as_desired(p) for p in node.get('processes') or []))


def cluster(config_path, as_json, only_node=None, out=sys.stdout):
    code, doc, message = load_running_state(config_path, 'dpd-masterd')
    if doc is None:
        _emit(out, as_json, {'schema': 1, 'running': code != EX_NOT_RUNNING, 'status': code,
                             'error': message}, [message])
        return code
    nodes, config = doc.get('nodes', []), doc.get('config', {})
    if only_node is not None:
        nodes = [n for n in nodes if n['node'] == only_node]
        if not nodes:
            _emit(out, as_json, {'schema': 1, 'running': True, 'status': EX_UNKNOWN,
                                 'error': 'no node %s' % only_node},
                  ['dpd-ctl: no node %s in %s' % (only_node, config_path)])
            return EX_UNKNOWN
    healthy = config.get('ok', True) and all(node_as_desired(n) for n in nodes
                                             if n['state'] != 'unmanaged')
    code = EX_OK if healthy else EX_DEGRADED
    if only_node is not None:
        node = nodes[0]
        lines = _table([(node['node'], node['state'].upper(), describe_node(node))])
        lines += ['  ' + line for line in _process_table(node.get('processes') or [])]
    else:
        lines = _table([(n['node'], n['state'].upper(), describe_node(n)) for n in nodes])
        if not nodes:
            lines.append('no nodes')
    lines += _rejected_config(config, 'master file rejected; every node keeps its list:')
    _emit(out, as_json, _running_doc(doc, code, config, nodes=nodes), lines)
    return code


def _process_table(procs):
    return _table([(p['name'], p['state'].upper(), describe(p)) for p in procs])


def _rejected_config(config, headline):
    """The lines that say the daemon's file was rejected, and why; none if it was not."""
    if config.get('ok', True):
        return []
    return [headline] + ['  ' + error for error in config.get('errors', [])]


def _running_doc(doc, code, config, **listing):
    """`--json` of a running daemon: the state file's header and its listing."""
    return dict({'schema': 1, 'running': True, 'status': code, 'pid': doc.get('pid'),
                 'updated': doc.get('updated'), 'config': config}, **listing)


def describe_node(node, now=None):
    now = time.time() if now is None else now
    parts = []
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


# ------------------------------------------------------------------ keygen

def keygen(directory, name, out=sys.stdout):
    from ..cluster.keys import KeyProblem, keygen as make_keys
    try:
        public, secret = make_keys(directory, name)
    except (KeyProblem, OSError) as err:
        sys.stderr.write('dpd-ctl: %s\n' % err)
        return 1
    out.write('%s (public, 0644)\n%s (secret, 0600: keep it on %s only)\n'
              % (public, secret, name))
    return 0


# ------------------------------------------------------------------ command line

def build_parser():
    ap = argparse.ArgumentParser(
        prog='dpd-ctl', description='Status of a diprocd worker or cluster; key generation.',
        epilog='Exit status: 0 all as desired; 3 daemon not running; 4 state unknown; '
               '150 running but something is not as desired; 2 usage error. keygen: 0 or 1.')
    ap.add_argument('--version', action='version', version='dpd-ctl (diprocd) %s' % __version__)
    sub = ap.add_subparsers(dest='command', required=True, metavar='COMMAND')
    p = sub.add_parser('status', help='one line per process of a worker')
    p.add_argument('--json', action='store_true', help='print one JSON object, nothing else')
    p.add_argument('config', metavar='WORKER_CONFIG')
    p = sub.add_parser('cluster', help='one line per node of a master, or per process of one')
    p.add_argument('--json', action='store_true', help='print one JSON object, nothing else')
    p.add_argument('--node', metavar='NODE', help='the processes of this node')
    p.add_argument('config', metavar='MASTER_CONFIG')
    p = sub.add_parser('keygen', help='write DIR/NAME.key and DIR/NAME.key_secret (CURVE)')
    p.add_argument('directory', metavar='DIR')
    p.add_argument('name', metavar='NAME', help='a node name, or e.g. "master"')
    return ap


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.command == 'keygen':
        sys.exit(keygen(args.directory, args.name))
    path = os.path.abspath(args.config)
    if args.command == 'status':
        sys.exit(status(path, args.json))
    sys.exit(cluster(path, args.json, args.node))


if __name__ == '__main__':
    main()
