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


def write(path, program, body, encoder=None):
    """Atomically replace the state file of `program` with `body` plus the header."""
    doc = {'schema': SCHEMA, 'program': program, 'version': __version__, 'pid': os.getpid(),
           'boot_id': procfs.boot_id(), 'updated': round(time.time(), 3)}
    doc.update(body)
    text = (encoder or StateEncoder()).dumps(doc)
    jsonfile.replace_file(path, text.encode(), mode=0o644, durable=False)


class StateEncoder:
    """Encodes a state document as `jsonfile.dumps` does, reusing the text of each
    process (or node) entry equal to the one of the last write. A crash loop
    rewrites the worker's state file at every start, and encoding fifty
    unchanged entries each time was most of the worker's CPU. (Entries are
    compared as Python values: a field never changes type between writes, so
    1 == 1.0 never hides a different text.)"""

    LISTS = {'procs': 'name', 'nodes': 'node'}     # list key -> the entries' own key
    # lists whose entries keep where one big value lies in their text: a node's
    # process table, most of its record, stays while an edit changes what the
    # node is served and a report when it was seen (a process's record is small,
    # and changes whole)
    KEPT = {'nodes': 'processes'}

    def __init__(self):
        self._known = {}        # list key -> {entry name: (entry, its text, span or None)}

    def dumps(self, doc):
        members = []
        for key in sorted(doc):
            value = doc[key]
            if key in self.LISTS and isinstance(value, list):
                text = self._list(key, value)
            else:
                text = jsonfile.dumps(value)
            members.append('%s:%s' % (jsonfile.quote(key), text))
        return '{%s}' % ','.join(members)

    def _list(self, key, entries):
        known, now_known, texts = self._known.get(key, {}), {}, []
        big = self.KEPT.get(key)
        for entry in entries:
            name = entry.get(self.LISTS[key]) if isinstance(entry, dict) else None
            hit = known.get(name)
            # the very same object as last time: callers never change an entry they
            # handed over (the master's view keeps its records until a node changes)
            if hit is None or (hit[0] is not entry and hit[0] != entry):
                hit = (entry,) + _entry_text(entry, hit, big)
            now_known[name] = hit
            texts.append(hit[1])
        self._known[key] = now_known
        return '[%s]' % ','.join(texts)


def _entry_text(entry, last, big):
    """(text, span) of a changed entry: `span` is where the value of its key `big`
    lies in the text (None: nowhere). That value, when it is the same object as
    in the entry of last time, keeps its text (a slice of the last one), and the
    rest is encoded in two calls. The write after an edit (every record changed,
    no table) took 35-55 ms for a thousand nodes and takes 17-28; a record whose
    table changed costs a fifth more than one call for all of it; and nothing
    but the span is kept beside the text (the texts of every value, which were
    kept after a write that changed few of them, were 7 MB at 10,000 nodes once
    a third of them had reported again)."""
    if big is None or not isinstance(entry, dict) or big not in entry or \
            not all(type(k) is str for k in entry):
        return jsonfile.dumps(entry), None
    value = entry[big]
    if last is not None and last[2] is not None and last[0][big] is value:
        start, end = last[2]
        big_text = last[1][start:end]
    else:
        big_text = jsonfile.dumps(value)
    # the keys sorted before and after it, as jsonfile.dumps sorts them
    head = jsonfile.dumps({k: v for k, v in entry.items() if k < big})[:-1]
    tail = jsonfile.dumps({k: v for k, v in entry.items() if k > big})[1:]
    head += '%s%s:' % ('' if head == '{' else ',', jsonfile.dumps(big))
    return '%s%s%s%s' % (head, big_text, '' if tail == '}' else ',', tail), \
        (len(head), len(head) + len(big_text))


def read(path):
    """The decoded state file, or raise OSError / JsonError."""
    data, _ = jsonfile.read_regular(path, limit=MAX_STATE_BYTES)
    doc = jsonfile.loads(data)
    if not isinstance(doc, dict) or doc.get('schema') != SCHEMA:
        raise jsonfile.JsonError('not a diprocd state file of schema %d' % SCHEMA)
    return doc


class WallTimes:
    """A policy's records as the state file shows them: each copied once, with its
    monotonic times made wall times by `show(record, wall)`. A record the policy
    hands again (it did not change) keeps its copy, which the state encoder then
    reuses as it is; `fresh(copy)` may still ask for a new copy. One (monotonic,
    wall) pair serves every conversion until the wall clock steps: the two clocks
    run at one rate (NTP slews both), so a time stays the same text from one
    write to the next."""

    STEP = 0.01      # the wall clock moved this far against the monotonic one

    def __init__(self, key, show, fresh=None):
        self.key, self.show, self.fresh = key, show, fresh
        self._clocks, self._copies = None, {}       # key -> (record, its copy)

    def copies(self, records):
        now_mono, now_wall = time.monotonic(), time.time()
        if self._clocks is None or \
                abs(now_wall - now_mono - self._clocks[1] + self._clocks[0]) > self.STEP:
            self._clocks, self._copies = (now_mono, now_wall), {}
        mono, wall = self._clocks
        known, copies, key, fresh = self._copies, {}, self.key, self.fresh
        for record in records:
            hit = known.get(record[key])
            if hit is None or hit[0] is not record or (fresh and not fresh(hit[1])):
                hit = (record, self.show(record, lambda t: to_wall(t, mono, wall)))
            copies[record[key]] = hit
        self._copies = copies
        return [copy for _, copy in copies.values()]


def worker_body(snapshot, procs):
    """The worker's state body: `procs`, its snapshot's records as WallTimes shows them."""
    return {'config': snapshot['config'], 'shutting_down': snapshot['shutting_down'],
            'procs': procs}


def shown_proc(record, wall):
    """A worker's process record with wall times (for WallTimes)."""
    copy = dict(record, since=wall(record['since']), next_start=wall(record['next_start']))
    last_exit = record['last_exit']
    if last_exit:
        copy['last_exit'] = dict(last_exit, at=wall(last_exit['at']))
    return copy
