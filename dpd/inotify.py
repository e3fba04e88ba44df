"""A minimal inotify binding through ctypes (stdlib only)."""
import ctypes
import os
import struct

IN_MODIFY = 0x002
IN_ATTRIB = 0x004
IN_CLOSE_WRITE = 0x008
IN_MOVED_FROM = 0x040
IN_MOVED_TO = 0x080
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
IN_Q_OVERFLOW = 0x4000
IN_IGNORED = 0x8000
IN_ONLYDIR = 0x01000000
IN_CLOEXEC = 0o2000000
IN_NONBLOCK = 0o4000

_EVENT = struct.Struct('iIII')   # wd, mask, cookie, len; then the name, NUL-padded
_libc = None


def _lib():
    global _libc
    if _libc is None:
        # The interpreter already links libc; find_library() would fork `ldconfig -p`,
        # and a daemon must not fork once its threads run.
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def init():
    fd = _lib().inotify_init1(IN_CLOEXEC | IN_NONBLOCK)
    if fd < 0:
        raise OSError(ctypes.get_errno(), 'inotify_init1: ' + os.strerror(ctypes.get_errno()))
    return fd


def add_watch(fd, path, mask):
    wd = _lib().inotify_add_watch(fd, os.fsencode(path), mask)
    if wd < 0:
        errno_ = ctypes.get_errno()
        raise OSError(errno_, '%s: %s' % (path, os.strerror(errno_)))
    return wd


def parse(data):
    """[(wd, mask, name)] from what read() returned."""
    events, offset = [], 0
    while offset + _EVENT.size <= len(data):
        wd, mask, _, length = _EVENT.unpack_from(data, offset)
        offset += _EVENT.size
        name = data[offset:offset + length].rstrip(b'\0')
        offset += length
        events.append((wd, mask, os.fsdecode(name)))
    return events
