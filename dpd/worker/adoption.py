"""What a previous worker on the same config left behind, and taking it over
(SPEC 3.5, 5.2).

Its state file lists every process with pid, identity (start time and
session) and definition; its journal, the starts since that file was
written. A process is adopted only if the boot is the same and the pid still
belongs to a process with the recorded identity: a recycled pid is never
adopted, so never signalled. A record is taken only as far as the live
process confirms it, and only when its name and definition pass today's
rules: nothing else in a previous state file makes the worker signal a
process or touch a path. `restart: false` processes that already ran on this
boot are remembered, so they are not run again. A `daemon: true` launch
that was under way is a leftover: its launcher is stopped, to start afresh.
"""
import logging
import os
import signal

from .. import healthspec, limitspec, procfs, state
from ..procspec import NAME_PATTERN, USER_PATTERN
from ..schema import Invalid, list_of, number
from . import journal
from . import lifecycle as lc
from .events import PreviousRun
from .output import log_owners
from .starter import kill_group

log = logging.getLogger('dpd.adoption')


def previous_run(state_path):
    """A PreviousRun event; empty after a reboot or without a usable state file."""
    try:
        doc = state.read(state_path)
    except FileNotFoundError:
        doc = {'boot_id': procfs.boot_id(), 'procs': []}
    except (OSError, ValueError) as err:
        log.warning('%s: not used to adopt processes: %s', state_path, err)
        return PreviousRun((), (), ())
    if doc.get('boot_id') != procfs.boot_id() or not isinstance(doc.get('procs'), list):
        return PreviousRun((), (), ())
    records = {}
    for record in map(_checked, doc['procs']):
        if record is not None:
            records[record['name']] = record
    entries = journal.read(journal.path_of(state_path))
    for entry in entries:
        if 'spawning' not in entry:
            _journaled(records, entry)
    return _sorted(records.values())._replace(unconfirmed=journal.unconfirmed_spawns(entries))


def take_over(previous, executor, confine):
    """Watch what the previous worker left running; drop what already ended;
    end the launches it left half done (they start afresh)."""
    reaper, outputs, trees = executor.reaper, executor.outputs, executor.trees
    for pid in procfs.pids_marked(journal.SPAWN_MARK, previous.unconfirmed):
        log.warning('ending pid %d: the previous worker died starting it, before it could '
                    'record it (it starts afresh)', pid)
        kill_group(pid, signal.SIGKILL)        # the child leads its group...
        try:
            os.kill(pid, signal.SIGKILL)       # ...a descendant carrying the mark may not
        except ProcessLookupError:
            pass
    for record in previous.leftovers:
        pid, started = record['launch']
        log.warning('%s: ending the launch (pid %d) the previous worker left unfinished',
                    record['name'], pid)
        if procfs.is_alive(pid, started):
            kill_group(pid, signal.SIGKILL)
    kept = []
    for record in previous.adopted:
        name, pid, definition = record['name'], record['pid'], record['definition']
        limits = definition.get('limits') and limitspec.limits(definition['limits'])
        if not trees.adopt(name, record['cgroup'], pid, limits):
            log.warning('%s: pid %d is not in the cgroup it was started in; not adopted',
                        name, pid)
            continue
        if not reaper.watch_process(name, pid) or not procfs.is_alive(pid, record['started']):
            continue  # it ended between the check and the watch; its pid was reused
        if trees.events_file(name):
            reaper.watch_tree(name, trees.events_file(name))
        if definition.get('notify'):
            executor.notifications.ensure(name)      # its sd_notify reaches us again
        if definition['logs']:
            try:
                outputs.attach(name, definition['logs'], log_owners(definition['user']), confine,
                               via_pid=pid)
            except OSError as err:
                log.error('%s: cannot reattach its output to %s: %s', name,
                          definition['logs'], err)
        kept.append(record)
    return PreviousRun(tuple(kept), previous.finished)


def _sorted(records):
    adopted, finished, leftovers = [], [], []
    for record in records:
        if record['state'] in lc.ACTIVE and procfs.is_alive(record['pid'], record['started']):
            adopted.append(record)
        elif record['launch'] and procfs.is_alive(*record['launch']):
            leftovers.append(record)
        elif record['state'] == lc.EXITED and not record['definition']['restart']:
            finished.append(record)
    return PreviousRun(tuple(adopted), tuple(finished), tuple(leftovers))


def _journaled(records, entry):
    """A start the state file had not recorded yet: the newest word on that name."""
    started = dict(entry, state=lc.STARTING if entry.get('launch') else lc.RUNNING)
    before = records.get(entry.get('name'))
    if before is not None and before['fingerprint'] == entry.get('fingerprint'):
        started.update(starts=before['starts'], restarts=before['restarts'])
    record = _checked(started)
    if record is not None:
        records[record['name']] = record


def _identity(value):
    """A state file's [start ticks, session] as procfs.identity's tuple, or None."""
    if isinstance(value, list) and len(value) == 2 and all(type(v) is int for v in value):
        return tuple(value)
    return None


def _checked(record):
    """The record with monotonic times and a valid definition, or None."""
    try:
        definition = _definition(record['definition'])
        name = record['name']
        if name != definition['name']:
            return None
        pid, started = record.get('pid'), _identity(record.get('started'))
        if type(pid) is not int or pid <= 1 or started is None:
            pid = started = None           # nothing to adopt: it never ran, or ended
        last_exit = record.get('last_exit')
        if last_exit is not None:
            last_exit = dict(last_exit, at=state.to_mono(last_exit.get('at')))
        cgroup = record.get('cgroup')
        return {
            'name': name, 'state': str(record['state']), 'pid': pid, 'started': started,
            'launch': _launch(record.get('launch')),
            'cgroup': cgroup if isinstance(cgroup, str) and cgroup.startswith('/') else None,
            'fingerprint': str(record['fingerprint']), 'definition': definition,
            'starts': [float(t) for t in record.get('starts') or ()][-lc.MAX_STARTS:],
            'restarts': int(record.get('restarts') or 0),
            'since': state.to_mono(record.get('since')), 'last_exit': last_exit,
        }
    except (KeyError, TypeError, ValueError, AttributeError, Invalid):
        return None


def _launch(value):
    """[pid, start ticks, session] of a `daemon: true` launcher: (pid, identity)."""
    if isinstance(value, list) and len(value) == 3 and all(type(v) is int for v in value) \
            and value[0] > 1:
        return value[0], (value[1], value[2])
    return None


# A definition as records keep it (ProcessSpec.public_record: every field but env,
# in the spec's own types), checked field by field: today's rules, or nothing.
DEFINITION = {
    'name': lambda v: isinstance(v, str) and NAME_PATTERN.match(v),
    'run': lambda v: _path(v), 'args': lambda v: isinstance(v, list) and all(
        isinstance(a, str) and '\0' not in a for a in v),
    'user': lambda v: isinstance(v, str) and USER_PATTERN.match(v),
    'group': lambda v: v is None or (isinstance(v, str) and USER_PATTERN.match(v)),
    'chroot': lambda v: _path(v), 'cwd': lambda v: isinstance(v, str) and '\0' not in v,
    'pid_file': lambda v: v is None or _path(v), 'logs': lambda v: v is None or _path(v),
    'write_pid': lambda v: type(v) is bool, 'daemon': lambda v: type(v) is bool,
    'restart': lambda v: type(v) is bool,
    'umask': lambda v: type(v) is int and 0 <= v <= 0o777,
    'stop_signal': lambda v: type(v) is int and v in STOP_SIGNALS,
    'stop_timeout': lambda v: type(v) in (int, float) and 0 <= v <= 86400,
}
# keys of round two: present when set, checked by the schema's own rules
OPTIONAL = {'limits': limitspec.limits, 'health': healthspec.health,
            'depends': lambda v: list_of(_checked_name)(v),
            'notify': lambda v: v if type(v) is bool else _bad('notify'),
            'watchdog': number(0.1, 86400)}


def _checked_name(value):
    if not isinstance(value, str) or not NAME_PATTERN.match(value):
        raise Invalid('not a process name')
    return value


def _bad(key):
    raise Invalid('bad %s' % key)
STOP_SIGNALS = frozenset(int(s) for s in signal.Signals) - {
    signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU, signal.SIGCHLD,
    signal.SIGCONT, signal.SIGWINCH, signal.SIGURG}


def _path(value):
    return isinstance(value, str) and value.startswith('/') and '\0' not in value \
        and '..' not in value.split('/')


def _definition(value):
    if not isinstance(value, dict) or not set(DEFINITION) <= set(value) <= \
            set(DEFINITION) | set(OPTIONAL):
        raise Invalid('not a definition')
    for key, check in DEFINITION.items():
        if not check(value[key]):
            raise Invalid('bad %s' % key)
    for key, check in OPTIONAL.items():
        if key in value:
            check(value[key])          # raises Invalid
    return value
