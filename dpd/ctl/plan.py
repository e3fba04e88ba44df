"""`dpd-ctl plan [-c MASTER_CONFIG] [NEWFILE]`: what NEWFILE would change on each
node, against what each node last reported running (SPEC 6.5).

What a node runs is known by the version it reports applied (the master's
state file): when that is the list the master file on disk holds for it (or
NEWFILE's own), its definitions are compared key by key; otherwise only the
names it reports are, and the line says so. Exit statuses: 0 nothing changes,
2 something changes, 78 NEWFILE is invalid, 1 other errors.
"""
import sys

from .. import jsonfile, state
from ..cluster.config import load_master
from ..cluster.plan import node_change, specs_of
from ..config import ConfigError, daemon_files
from ..printable import printable

EX_SAME, EX_FAILED, EX_CHANGES, EX_INVALID = 0, 1, 2, 78


def plan(config_path, new_path=None, as_json=False, out=sys.stdout, err=sys.stderr):
    path = new_path or config_path
    try:
        jsonfile.read_regular(path)
    except OSError as problem:
        err.write('dpd-ctl: cannot read %s: %s\n' % (printable(path), problem.strerror))
        return EX_FAILED
    except ValueError:
        pass                                 # too big, not a file: said as invalid below
    try:
        new = load_master(path)
    except ConfigError as problem:
        return _invalid(problem.messages, as_json, out, err)
    current = _current(config_path, new_path)
    reported = _reported(config_path)
    changes = [_change(node, listed, current, reported.get(node))
               for node, listed in sorted(new.nodes.items())]
    invalid = [c for c in changes if c.error]
    changing = [c for c in changes if c.changes and not c.error]
    unchanged = len(changes) - len(invalid) - len(changing)
    code = EX_INVALID if invalid else EX_CHANGES if changing else EX_SAME
    if as_json:
        out.write(jsonfile.dumps({'schema': 1, 'status': code, 'changed': len(changing),
                                  'unchanged': unchanged,
                                  'nodes': [_json(c) for c in changing + invalid]},
                                 indent=1))
    else:
        out.write(''.join(printable(line) + '\n' for line in _lines(changing, invalid,
                                                                    unchanged)))
    return code


def _invalid(messages, as_json, out, err):
    if as_json:
        out.write(jsonfile.dumps({'schema': 1, 'status': EX_INVALID, 'errors': messages}))
    else:
        err.write(''.join('! %s\n' % printable(m) for m in messages))
    return EX_INVALID


def _current(config_path, new_path):
    """The lists of the master file on disk (node -> NodeList), when NEWFILE is
    another file; {} if it cannot be read (then names are compared)."""
    if not new_path:
        return {}
    try:
        return load_master(config_path).nodes
    except (ConfigError, OSError):
        return {}


def _reported(config_path):
    """node -> its record in the master's state file (applied version, processes)."""
    try:
        doc = state.read(daemon_files(config_path)[1])
    except (OSError, ValueError):
        return {}
    return {n.get('node'): n for n in doc.get('nodes') or () if isinstance(n, dict)}


def _change(node, listed, current, report):
    if not listed.valid:
        return node_change(node, {}, {})._replace(error='; '.join(listed.errors))
    new_specs = specs_of(listed.entries, node)
    applied = ((report or {}).get('applied') or {}).get('sha256')
    if report is None or not report.get('last_seen'):
        return node_change(node, {}, new_specs, note='never seen: it runs nothing we know of')
    if applied == listed.sha256:
        return node_change(node, new_specs, new_specs)
    base = current.get(node)
    if base is not None and base.valid and applied == base.sha256:
        return node_change(node, specs_of(base.entries, node), new_specs)
    names = {p.get('name'): None for p in report.get('processes') or ()}
    return node_change(node, names, new_specs, note='runs a list this master file does not '
                       'hold: compared by the names it reports')


def _lines(changing, invalid, unchanged):
    lines = []
    for change in changing:
        lines.append('%s:%s' % (change.node, ' (%s)' % change.note if change.note else ''))
        lines += ['  + %s' % name for name in change.added]
        lines += ['  - %s' % name for name in change.removed]
        lines += ['  ~ %s: %s %s -> %s' % (name, key, _shown(old), _shown(new))
                  for name, key, old, new in change.changed]
    lines += ['! %s: %s' % (change.node, change.error) for change in invalid]
    lines.append('%d node%s change%s, %d unchanged%s' % (
        len(changing), '' if len(changing) == 1 else 's', 's' if len(changing) == 1 else '',
        unchanged, ', %d invalid' % len(invalid) if invalid else ''))
    return lines


def _shown(value):
    if value is None:
        return '(none)'
    return value if value == '***' else jsonfile.dumps(value)


def _json(change):
    return {'node': change.node, 'added': list(change.added), 'removed': list(change.removed),
            'changed': [{'name': n, 'key': k, 'old': o, 'new': v}
                        for n, k, o, v in change.changed],
            'error': change.error, 'note': change.note}
