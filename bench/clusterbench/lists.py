"""The master file's node lists, and the JSON files this benchmark writes and reads."""
import json
import os
import shutil

from dpd.cluster import protocol

from . import mono

SLEEP = shutil.which('sleep') or '/bin/sleep'


def node_list(node, rev, count):
    """A node's list in the master file: `count` processes (~230 bytes each),
    `rev` in every env, so a new rev changes every process of every node."""
    return [{'name': 'svc%d' % i, 'run': '/usr/bin/svc%d' % i,
             'args': ['--port', str(8000 + i), '--node', node, '--threads', '4'],
             'user': 'svc', 'env': {'MODE': 'prod', 'REV': str(rev), 'REGION': 'eu-1'},
             'logs': '/var/log/svc/svc%d.log' % i, 'restart': True}
            for i in range(count)]


def running_processes(entries, since):
    """Every process of `entries` running since `since`, as a client reports it
    (the fields a worker has a value for)."""
    return [{'name': e.get('name'), 'state': 'running', 'pid': 10000 + i, 'restarts': 0,
             'since': since, 'restart': True}
            for i, e in enumerate(entries) if isinstance(e, dict)]


def sha_of(entries):
    """The sha256 the master will publish for `entries` (it parses the file back)."""
    return protocol.body_of(json.loads(json.dumps(entries)))[1]


def body_bytes(entries):
    """The size of the STATE body the master will send for `entries`."""
    return len(protocol.body_of(json.loads(json.dumps(entries)))[0])


def sleep_proc(name, marker):
    return {'name': name, 'run': SLEEP, 'args': [marker], 'user': 'nobody'}


def write_atomically(path, doc, mode=0o644):
    """Temp file in the same directory, then rename; returns the time just before
    the rename: the moment the file counts as saved."""
    tmp = '%s.bench.tmp' % path
    with open(tmp, 'w') as f:
        json.dump(doc, f, indent=1)
    os.chmod(tmp, mode)
    saved = mono()
    os.rename(tmp, path)
    return saved


def read_json(path):
    try:
        with open(path, 'rb') as f:
            return json.loads(f.read())
    except (OSError, ValueError):
        return None
