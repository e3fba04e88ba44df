"""What a previous worker on the same config left behind (SPEC 3.5).

Its state file lists every process with pid, identity (start time and
session) and definition. A process is adopted only if the boot is the same
and the pid still belongs to a process with the recorded identity: a
recycled pid is never adopted, so never signalled. `restart: false` processes that already ran on this boot are
remembered, so they are not run again.
"""
import logging

from .. import procfs, state
from ..procspec import ProcessSpec
from . import lifecycle as lc
from .events import PreviousRun

log = logging.getLogger('dpd.adoption')
DEFINITION_FIELDS = tuple(f for f in ProcessSpec._fields if f != 'env')


def previous_run(state_path):
    """A PreviousRun event; empty after a reboot or without a usable state file."""
    try:
        doc = state.read(state_path)
    except FileNotFoundError:
        return PreviousRun((), ())
    except (OSError, ValueError) as err:
        log.warning('%s: not used to adopt processes: %s', state_path, err)
        return PreviousRun((), ())
    if doc.get('boot_id') != procfs.boot_id() or not isinstance(doc.get('procs'), list):
        return PreviousRun((), ())
    adopted, finished = [], []
    for record in doc['procs']:
        record = _checked(record)
        if record is None:
            continue
        if record['state'] in lc.ACTIVE and procfs.is_alive(record['pid'], record['started']):
            adopted.append(record)
        elif record['state'] == lc.EXITED and not record['definition']['restart']:
            finished.append(record)
    return PreviousRun(tuple(adopted), tuple(finished))


def _identity(value):
    """A state file's [start ticks, session] as procfs.identity's tuple, or None."""
    if isinstance(value, list) and len(value) == 2 and all(type(v) is int for v in value):
        return tuple(value)
    return None


def _checked(record):
    """The record with monotonic times and a valid definition, or None."""
    try:
        definition = dict(record['definition'])
        if set(definition) != set(DEFINITION_FIELDS):
            return None
        definition['args'] = tuple(definition['args'])
        ProcessSpec(env=(), **definition)
        last_exit = record.get('last_exit')
        if last_exit is not None:
            last_exit = dict(last_exit, at=state.to_mono(last_exit.get('at')))
        pid, started = record.get('pid'), record.get('started')
        return {
            'name': str(record['name']), 'state': str(record['state']),
            'pid': pid if isinstance(pid, int) and not isinstance(pid, bool) else None,
            'started': _identity(started),
            'fingerprint': str(record['fingerprint']), 'definition': definition,
            'starts': [float(t) for t in record.get('starts') or ()][-lc.MAX_STARTS:],
            'restarts': int(record.get('restarts') or 0),
            'since': state.to_mono(record.get('since')), 'last_exit': last_exit,
        }
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
