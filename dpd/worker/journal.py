"""The journal of starts: each started process is on disk before the next starts.

The state file is written once per batch of facts. A worker killed in the
middle of starting a hundred processes would leave those started since the
last write unrecorded, and the next worker would start them again (SPEC 5.2).
So the executor appends one line per start here at once (a write to the page
cache: it survives the worker's death, which is what it is for), and empties
the journal whenever the state file it just wrote holds everything. The next
worker reads the state file, then the journal over it (adoption.py).
"""
import os

from .. import jsonfile
from ..safefile import check_owned


SPAWN_MARK = 'DIPROCD_START'     # in a child's environment: the journal line of its start


def path_of(state_file):
    base = state_file[:-len('.json')] if state_file.endswith('.json') else state_file
    return base + '.journal'


class Journal:
    def __init__(self, path):
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW |
                          os.O_CLOEXEC, 0o600)
        try:
            check_owned(self.fd, path)
        except BaseException:
            os.close(self.fd)
            raise

    def record(self, entry):
        """One start: appended in one write (a torn line is skipped on reading)."""
        os.write(self.fd, (jsonfile.dumps(entry) + '\n').encode())

    def clear(self):
        os.ftruncate(self.fd, 0)


def unconfirmed_spawns(entries):
    """The marks of starts journaled before they happened and never confirmed by a
    start line of the same name after them: the worker died in between."""
    pending = {}
    for entry in entries:
        if 'spawning' in entry:
            pending[entry.get('name')] = entry['spawning']
        else:
            pending.pop(entry.get('name'), None)
    return tuple(mark for mark in pending.values() if isinstance(mark, str) and
                 len(mark) == 16)


def read(path):
    """The entries of a journal (dicts), oldest first; [] if there is none."""
    try:
        data, _ = jsonfile.read_regular(path)
    except (OSError, ValueError):
        return []
    entries = []
    for line in data.splitlines():
        try:
            entry = jsonfile.loads(line)
        except ValueError:
            continue       # the write the worker died in
        if isinstance(entry, dict):
            entries.append(entry)
    return entries
