"""The client's view of the local worker file, and its one way of changing it.

Only `procs` and the client's own `_diprocd` record are ever replaced: the
worker's `pid_file`, `log_file` and every other key stay as the local admin
wrote them. The write is atomic (temp file in the same directory, fsync,
rename, fsync of the directory), mode 0600 (the file holds `env` secrets),
and skipped when nothing would change.
"""
import os
import time

from .. import jsonfile, state
from ..config import MANAGED_RECORD as RECORD_KEY, daemon_files
from ..daemon import is_locked
from . import protocol
from .protocol import PROCESS_FIELDS
from .events import WorkerObserved



class Refused(Exception):
    pass


def observe(conf_file):
    """A WorkerObserved: what the worker file holds, and what its worker says."""
    read_at = time.monotonic()
    running, doc = _worker_state(conf_file)
    return WorkerObserved(applied=_applied(_read(conf_file)), worker=_worker(running, doc),
                          processes=_processes(running, doc), read_at=read_at)


def _read(conf_file):
    try:
        doc = jsonfile.loads(jsonfile.read_regular(conf_file)[0])
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _applied(doc):
    """{gen, sha256, epoch} of the list the file holds; gen 0 (and no epoch) when
    nobody recorded it (edited by hand)."""
    if doc is None or not isinstance(doc.get('procs'), list):
        return None
    _, sha256 = protocol.body_of(doc['procs'])
    record = doc.get(RECORD_KEY)
    if isinstance(record, dict) and record.get('sha256') == sha256 and \
            type(record.get('gen')) is int and 0 <= record['gen'] <= protocol.MAX_GEN:
        epoch = record.get('epoch')
        return {'gen': record['gen'], 'sha256': sha256,
                'epoch': epoch if isinstance(epoch, str) else None}
    return {'gen': 0, 'sha256': sha256, 'epoch': None}


def _worker_state(conf_file):
    lock, state_path = daemon_files(conf_file)
    try:
        return is_locked(lock), state.read(state_path)
    except (OSError, ValueError):
        return is_locked(lock), None


def _worker(running, doc):
    config = (doc or {}).get('config') or {}
    errors = [protocol.clipped(str(e)) for e in list(config.get('errors') or [])[:10]]
    loaded_at = config.get('loaded_at')
    return {'running': running, 'pid': (doc or {}).get('pid') if running else None,
            'config_ok': config.get('ok'), 'errors': errors,
            'config_loaded_at': loaded_at if type(loaded_at) in (int, float) else None}


def _processes(running, doc):
    """The worker's processes as a REPORT carries them (the first thousand)."""
    if not running or not doc or not isinstance(doc.get('procs'), list):
        return ()
    procs = [p for p in doc['procs'] if isinstance(p, dict)][:protocol.MAX_REPORTED_PROCESSES]
    return tuple(_reported(p) for p in procs)


CLIPPED = ('error', 'health_error', 'status_text')      # texts cut to what a REPORT carries


def _reported(proc):
    """A process as a REPORT says it: its fields that have a value. Most are null
    at any time (no error, no check, no last exit...), and they were half of the
    bytes a thousand nodes report after an edit, and of what the master parses."""
    record = {}
    for key in PROCESS_FIELDS:
        value = proc.get(key)
        if value is not None:
            record[key] = protocol.clipped(value) if key in CLIPPED and \
                isinstance(value, str) else value
    return record


def write(conf_file, entries, record):
    """Put `entries` in the worker file's `procs`; raise Refused with the reason."""
    try:
        current, _ = jsonfile.read_regular(conf_file)
    except FileNotFoundError:
        doc = {'procs': []}
    except (OSError, ValueError) as err:
        raise Refused('cannot read it (%s); not replacing a file I cannot read' % err) from None
    else:
        try:
            doc = jsonfile.loads(current)
        except jsonfile.JsonError as err:
            raise Refused('it is not valid JSON (%s); not replacing the admin\'s file' % err) \
                from None
        if not isinstance(doc, dict):
            raise Refused('it is not a JSON object; not replacing the admin\'s file')
    wanted = dict(doc, procs=list(entries), **{RECORD_KEY: record})
    if wanted == doc:
        return
    data = jsonfile.dumps(wanted, indent=1).encode()
    try:
        jsonfile.replace_file(conf_file, data, mode=0o600)
    except OSError as err:
        raise Refused('%s' % (err.strerror or err)) from None


def default_conf(conf_file):
    """Create the worker file if it is missing: {"procs": []}, mode 0600."""
    if not os.path.lexists(conf_file):
        jsonfile.replace_file(conf_file, jsonfile.dumps({'procs': []}, indent=1).encode(),
                              mode=0o600)
