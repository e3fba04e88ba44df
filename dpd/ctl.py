"""dpd-ctl: the operator's tool. Reads state files; never talks to a daemon.

Exit statuses (LSB, plus 150): 0 all as desired; 3 daemon not running;
4 state unknown (state file missing or unreadable while the daemon runs);
150 running, but something is not as desired.
"""
import argparse
import os
import sys
import time

from . import __version__, jsonfile, state
from .config import default_state_file
from .daemon import is_locked
from .lifecycle import SETTLED_OK

EX_OK, EX_NOT_RUNNING, EX_UNKNOWN, EX_DEGRADED = 0, 3, 4, 150


def daemon_files(config_path):
    """(lock path, state path) from a config, read leniently: even a broken file
    that the daemon rejected still names its pid and state files."""
    pid_file = state_file = None
    try:
        doc = jsonfile.loads(jsonfile.read_regular(config_path)[0])
        if isinstance(doc, dict):
            pid_file, state_file = doc.get('pid_file'), doc.get('state_file')
    except (OSError, ValueError):
        pass
    lock = pid_file if isinstance(pid_file, str) else config_path + '.lock'
    return lock, state_file if isinstance(state_file, str) else default_state_file(config_path)


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
    lines = _table([(p['name'], p['state'].upper(), describe(p)) for p in procs])
    if not procs:
        lines.append('no processes configured')
    if not config.get('ok', True):
        lines.append('configuration rejected; the processes follow the last valid file:')
        lines.extend('  ' + error for error in config.get('errors', []))
    _emit(out, as_json, {'schema': 1, 'running': True, 'status': code, 'pid': doc.get('pid'),
                         'updated': doc.get('updated'), 'config': config,
                         'processes': [_public(p) for p in procs]}, lines)
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


# ------------------------------------------------------------------ command line

def build_parser():
    ap = argparse.ArgumentParser(
        prog='dpd-ctl', description='Status of a diprocd worker or cluster; key generation.',
        epilog='Exit status: 0 all as desired; 3 daemon not running; 4 state unknown; '
               '150 running but something is not as desired; 2 usage error.')
    ap.add_argument('--version', action='version', version='dpd-ctl (diprocd) %s' % __version__)
    sub = ap.add_subparsers(dest='command', required=True, metavar='COMMAND')
    p = sub.add_parser('status', help='one line per process of a worker')
    p.add_argument('--json', action='store_true', help='print one JSON object, nothing else')
    p.add_argument('config', metavar='WORKER_CONFIG')
    return ap, sub


def main(argv=None):
    ap, _ = build_parser()
    args = ap.parse_args(argv)
    path = os.path.abspath(args.config)
    if args.command == 'status':
        sys.exit(status(path, args.json))


if __name__ == '__main__':
    main()
