"""State files: what a daemon publishes for `dpd-ctl` and for its successor.

Policies keep `time.monotonic()` times; files carry wall-clock times (epoch
seconds) for people, plus the boot id, so monotonic values saved for the next
worker (restart windows) are only trusted on the same boot.
"""
import os
import time

from . import __version__, jsonfile, procfs

SCHEMA = 1
MAX_STATE_BYTES = 64 * 1024 * 1024


def to_wall(mono, now_mono=None, now_wall=None):
    if mono is None:
        return None
    now_mono = time.monotonic() if now_mono is None else now_mono
    now_wall = time.time() if now_wall is None else now_wall
    return round(now_wall - (now_mono - mono), 3)


def to_mono(wall):
    if wall is None:
        return None
    return time.monotonic() - (time.time() - wall)


def write(path, program, body):
    """Atomically replace the state file of `program` with `body` plus the header."""
    doc = {'schema': SCHEMA, 'program': program, 'version': __version__, 'pid': os.getpid(),
           'boot_id': procfs.boot_id(), 'updated': round(time.time(), 3)}
    doc.update(body)
    jsonfile.replace_file(path, jsonfile.dumps(doc).encode(), mode=0o644,
                          durable=False)


def read(path):
    """The decoded state file, or raise OSError / JsonError."""
    data, _ = jsonfile.read_regular(path, limit=MAX_STATE_BYTES)
    doc = jsonfile.loads(data)
    if not isinstance(doc, dict) or doc.get('schema') != SCHEMA:
        raise jsonfile.JsonError('not a diprocd state file of schema %d' % SCHEMA)
    return doc


def worker_body(snapshot):
    """The worker's snapshot (monotonic times) as the state file shows it."""
    now_mono, now_wall = time.monotonic(), time.time()

    def wall(mono):
        return to_wall(mono, now_mono, now_wall)

    procs = []
    for record in snapshot['procs']:
        last_exit = record['last_exit']
        procs.append(dict(
            record, since=wall(record['since']), next_start=wall(record['next_start']),
            last_exit=dict(last_exit, at=wall(last_exit['at'])) if last_exit else None))
    return {'config': snapshot['config'], 'shutting_down': snapshot['shutting_down'],
            'procs': procs}
