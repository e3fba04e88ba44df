"""What every dpd-ctl view shares: a daemon's state file, exit statuses, tables.

dpd-ctl reads state files and the daemons' locks; it never talks to a daemon
for a view. Exit statuses (LSB, plus 150): 0 all as desired; 3 daemon not
running; 4 state unknown (state file missing or unreadable while the daemon
runs); 150 running, but something is not as desired.
"""
import time

from .. import jsonfile, state
from ..config import daemon_files
from ..daemon import is_locked
from ..printable import printable

EX_OK, EX_NOT_RUNNING, EX_UNKNOWN, EX_DEGRADED = 0, 3, 4, 150


class View:
    """A running daemon's state file, or why there is none (`code`, `message`)."""

    def __init__(self, config_path, program):
        self.config_path, self.program = config_path, program
        self.code, self.doc, self.message = _load_running_state(config_path, program)

    def emit_unavailable(self, out, as_json):
        """No state to show: say why; the exit status."""
        emit(out, as_json, {'schema': 1, 'running': self.code != EX_NOT_RUNNING,
                            'status': self.code, 'error': self.message}, [self.message])
        return self.code

    def json_doc(self, code, **listing):
        """`--json` of a running daemon: the state file's header and its listing."""
        return dict({'schema': 1, 'running': True, 'status': code, 'pid': self.doc.get('pid'),
                     'updated': self.doc.get('updated'), 'config': self.config}, **listing)

    @property
    def config(self):
        return self.doc.get('config', {})

    def rejected_config(self, headline):
        """The lines that say the daemon's file was rejected, and why; none if it was not."""
        if self.config.get('ok', True):
            return []
        return [headline] + ['  ' + error for error in self.config.get('errors', [])]


def _load_running_state(config_path, program):
    """(exit status, state doc or None, message) for a daemon's config."""
    lock, state_path = daemon_files(config_path)
    if not is_locked(lock):
        return EX_NOT_RUNNING, None, '%s is not running (%s)' % (program, config_path)
    try:
        return EX_OK, state.read(state_path), None
    except (OSError, ValueError) as err:
        return EX_UNKNOWN, None, '%s runs, but its state is unknown: %s: %s' % (
            program, state_path, getattr(err, 'strerror', None) or err)


def table(rows):
    """Three aligned columns: name, STATE, details."""
    if not rows:
        return []
    rows = [tuple(printable(cell) for cell in row) for row in rows]
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    return [('%-*s  %-*s  %s' % (widths[0], a, widths[1], b, c)).rstrip() for a, b, c in rows]


def emit(out, as_json, doc, lines):
    """The JSON document, or the lines with what they quote escaped (a process name
    or a node's error text must not reach the terminal raw)."""
    if as_json:
        out.write(jsonfile.dumps(doc, indent=1))
    else:
        out.write(''.join(printable(line) + '\n' for line in lines))


def uptime(seconds):
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    clock = '%d:%02d:%02d' % (rest // 3600, rest // 60 % 60, rest % 60)
    return '%d day%s, %s' % (days, '' if days == 1 else 's', clock) if days else clock


def clock(wall):
    if wall is None:
        return '?'
    return time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(wall))
