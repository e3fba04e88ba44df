"""What the worker keeps of each process in its state file, for dpd-ctl and for
the next worker (adoption), and a Proc rebuilt from such a record."""
from ..procspec import spec_from_record
from . import lifecycle as lc


def record_inputs(proc, deadline, waiting_for=()):
    """All a process's record is made of, in one tuple: equal inputs make an equal
    record, so a snapshot reuses the record of a process whose inputs did not
    change (a restart among a thousand processes rebuilt all thousand). Every
    value is a copy or one that is replaced, never changed in place.
    `deadline`: the process's timer (the next start, in BACKOFF or FAILED);
    `waiting_for`: its dependencies not ready yet."""
    state = proc.state
    return (proc.name, state, proc.pid, proc.started, launch_record(proc.launch), proc.since,
            proc.restarts, proc.last_exit, proc.error, proc.spec,
            deadline if state in (lc.BACKOFF, lc.FAILED) else None, proc.fingerprint,
            tuple(proc.window.starts), proc.usage,
            tuple(waiting_for) if state == lc.WAITING else None,
            proc.health.record() if proc.health else NO_HEALTH)


def record_of(inputs):
    """The record of `record_inputs`, made of nothing else."""
    (name, state, pid, started, launch, since, restarts, last_exit, error, spec, next_start,
     fingerprint, starts, usage, waiting_for, health) = inputs
    record = {
        'name': name, 'state': state, 'pid': pid, 'started': started, 'launch': launch,
        'since': since, 'restarts': restarts, 'last_exit': last_exit, 'error': error,
        'restart': spec.restart, 'next_start': next_start, 'fingerprint': fingerprint,
        'starts': list(starts), 'definition': definition_record(spec),
        'memory_bytes': usage[0], 'cpu_seconds': usage[1],
        'waiting_for': None if waiting_for is None else list(waiting_for),
    }
    record.update(health)
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
