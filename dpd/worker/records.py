"""What the worker keeps of each process in its state file, for dpd-ctl and for
the next worker (adoption), and a Proc rebuilt from such a record."""
from ..procspec import spec_from_record
from . import lifecycle as lc


def proc_record(proc, deadline, waiting_for=()):
    """`deadline`: the process's timer (the next start, in BACKOFF or FAILED);
    `waiting_for`: its dependencies not ready yet."""
    record = {
        'name': proc.name, 'state': proc.state, 'pid': proc.pid, 'started': proc.started,
        'launch': launch_record(proc.launch),
        'since': proc.since, 'restarts': proc.restarts, 'last_exit': proc.last_exit,
        'error': proc.error, 'restart': proc.spec.restart,
        'next_start': deadline if proc.state in (lc.BACKOFF, lc.FAILED) else None,
        'fingerprint': proc.fingerprint, 'starts': list(proc.window.starts),
        'definition': definition_record(proc.spec),
        'memory_bytes': proc.usage[0], 'cpu_seconds': proc.usage[1],
        'waiting_for': list(waiting_for) if proc.state == lc.WAITING else None,
    }
    record.update(proc.health.record() if proc.health else NO_HEALTH)
    return record


NO_HEALTH = {'health': None, 'health_error': None, 'status_text': None}


def launch_record(launch):
    """A `daemon: true` launch under way, as the next worker needs it to end it:
    [launcher pid, start ticks, session]."""
    if launch is None or launch.started is None:
        return None
    return [launch.pid] + list(launch.started)


def definition_record(spec):
    """A definition without `env` (secrets stay out of the state file)."""
    return spec.public_record


def proc_from_record(record):
    """A stopped Proc with what a checked record (adoption._checked) says of its past."""
    spec = spec_from_record(record['definition'])
    proc = lc.Proc(spec, record['fingerprint'])
    proc.window = lc.RestartWindow(record.get('starts') or ())
    proc.restarts = record.get('restarts', 0)
    proc.since = record.get('since')
    proc.last_exit = record.get('last_exit')
    return proc
