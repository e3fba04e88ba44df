"""Strict JSON in, canonical JSON out, and files replaced atomically.

Everything diprocd reads is untrusted text (hand-edited configs, state files,
network messages), so parsing is strict: a duplicate key, NaN or Infinity is an
error rather than a silently chosen value, and deep nesting or huge numbers
end in a clean `JsonError`, never in a crash.
"""
import json as _stdjson
import os
import stat
import threading
from json import encoder as _stdencoder

from . import safereplace

try:  # simplejson is faster where installed; the stdlib json is the fallback
    import simplejson as _json
except ImportError:  # pragma: no cover - depends on the machine
    import json as _json

MAX_FILE_BYTES = 8 * 1024 * 1024


class JsonError(ValueError):
    """Text that is not strict JSON; `where` is "line L column C" when known."""

    def __init__(self, problem, where=None):
        super().__init__(problem if where is None else '%s: %s' % (where, problem))
        self.problem = problem
        self.where = where


def _reject_duplicates(pairs):
    obj = dict(pairs)         # in C; a duplicate shows as a shorter dict
    if len(obj) != len(pairs):
        seen = set()
        for key, _ in pairs:
            if key in seen:
                raise JsonError('duplicate key %s' % quote(key))
            seen.add(key)
    return obj


def _reject_constant(name):
    raise JsonError('%s is not valid JSON' % name)


def _finite_float(text):
    value = float(text)
    if value in (float('inf'), float('-inf')):  # 1e400: Infinity by another name
        raise JsonError('number %s is too large' % text[:20])
    return value


class _StrictDecoders(threading.local):
    """One strict decoder per parser and thread: `parser.loads(text, **hooks)`
    makes a new decoder (and its C scanner) at every call, 1.5 of the 20 us a
    REPORT takes to parse. Not one for all threads: a scanner keeps a memo of
    keys while it parses, and the hooks it calls let the GIL go."""

    def __init__(self):
        self.by_parser = {}

    def get(self, parser):
        decoder = self.by_parser.get(parser)
        if decoder is None:
            decoder = self.by_parser[parser] = parser.JSONDecoder(
                object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant,
                parse_float=_finite_float)
        return decoder


_decoders = _StrictDecoders()


def loads(text, parser=_json):
    """Parse strict JSON from str or bytes; raise JsonError on anything else."""
    if isinstance(text, bytes):
        try:
            text = text.decode('utf-8-sig')  # a BOM from a Windows editor is harmless
        except UnicodeDecodeError as err:
            raise JsonError('not UTF-8 (byte %d)' % err.start) from None
    try:
        return _decoders.get(parser).decode(text)
    except JsonError:
        raise
    except RecursionError:
        raise JsonError('nested too deeply') from None
    except ValueError as err:  # json.JSONDecodeError and simplejson's both subclass it
        lineno, colno = getattr(err, 'lineno', None), getattr(err, 'colno', None)
        where = 'line %d column %d' % (lineno, colno) if lineno else None
        problem = getattr(err, 'msg', None) or str(err)
        raise JsonError('invalid JSON: %s' % problem, where) from None


def _not_json(value):
    raise TypeError('%s is not JSON' % type(value).__name__)


# Measured here (Python 3.11, simplejson 3.19): the stdlib's C encoder makes the
# compact canonical text faster than simplejson (a node's list: 9 against 17 us; an
# ACK: 2 against 4; the same bytes, NaN refused by both), its C scanner parses a
# network message faster (a 4-process REPORT: 22 against 27 us, strictly), while
# simplejson stays the better one for whole files (a 1.3 MB master file parsed in
# 27 against 35 ms) and for indented text (the stdlib indents in Python: 110
# against 57 ms). The C encoder is made once: JSONEncoder.encode makes one per
# call, a third of the time a message header takes. It keeps no marks against
# circular references: what we encode comes from JSON or from our own records and
# never refers to itself, and the marks an error leaves behind would be wrong
# the next time.
_compact = _stdencoder.c_make_encoder(
    None, _not_json, _stdencoder.encode_basestring_ascii, None, ':', ',', True, False, False)


def dumps(obj, indent=None):
    """Canonical JSON: sorted keys, no spaces unless indented, ASCII only."""
    if indent is not None:
        return _json.dumps(obj, sort_keys=True, indent=indent, ensure_ascii=True) + '\n'
    if type(obj) is str:
        return _stdencoder.encode_basestring_ascii(obj)
    return ''.join(_compact(obj, 0))


def loads_message(text):
    """`loads` for a network message: as strict, with the stdlib's parser."""
    return loads(text, _stdjson)


dumps_message = dumps       # (a message is made as any compact text)


def quote(text):
    """A key or name as it should appear in a message: JSON-quoted, escaped."""
    return _json.dumps(text, ensure_ascii=True)


def read_regular(path, limit=MAX_FILE_BYTES):
    """(content, stat) of a regular file; never blocks on a FIFO or reads a device."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise JsonError('not a regular file')
        if info.st_size > limit:
            raise JsonError('too large (%d bytes, limit %d)' % (info.st_size, limit))
        chunks, size = [], 0
        while True:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return b''.join(chunks), info
            size += len(chunk)
            if size > limit:
                raise JsonError('too large (more than %d bytes)' % limit)
            chunks.append(chunk)
    finally:
        os.close(fd)


def replace_file(path, data, mode=0o644, durable=True):
    """Write `data` to `path` by temp file + rename, so readers see old or new;
    the directory reached without following a link anyone but root made, a
    link at `path` refused (safereplace: these are root's files, in directories
    others may control).

    `durable` adds the fsyncs that make the new content survive a power cut;
    files that only matter while the machine is up can skip them.
    """
    safereplace.replace(path, data, mode=mode, durable=durable, shared=True)
