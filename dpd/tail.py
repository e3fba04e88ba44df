"""A log file's last lines, and what is appended to it afterwards, across rotation.

`last_lines` reads backwards from the end. A `Follower` keeps reading as
`tail -F` does: inotify on the file's directory says when the file grows,
is truncated (logrotate's copytruncate: read again from the start), or is
moved away or replaced (`create`: the old file is read to its end, then the
new one from its start). It never sleeps in a loop: its `fd` is readable
when there may be something to read.
"""
import errno
import os
import select
import stat

from . import inotify

BLOCK = 1 << 16
MASK = (inotify.IN_MODIFY | inotify.IN_CREATE | inotify.IN_MOVED_TO | inotify.IN_MOVED_FROM |
        inotify.IN_DELETE | inotify.IN_ATTRIB | inotify.IN_CLOSE_WRITE)


def open_plain(path):
    """`path` for reading, as its reader may read it: never through a symbolic link
    (the last component), never a FIFO or a device (an open that blocks, a read
    that never ends). A root daemon's opener checks more (safefile.open_log_reader)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, 'not a regular file')
        os.set_blocking(fd, True)
        return os.fdopen(fd, 'rb')
    except BaseException:
        os.close(fd)
        raise


def last_lines(path, count, limit=1 << 24, opener=open_plain):
    """The last `count` lines of the file at `path` (bytes), at most `limit` bytes."""
    with opener(path) as f:
        return _lines_before(f, f.seek(0, os.SEEK_END), count, limit)


def _lines_before(f, end, count, limit=1 << 24):
    data, position = b'', end
    while count and position > 0 and data.count(b'\n') <= count and end - position < limit:
        step = min(BLOCK, position, limit - (end - position))
        position -= step
        f.seek(position)
        data = f.read(step) + data
    lines = data.splitlines(keepends=True)
    if position > 0 and len(lines) <= count:
        lines = lines[1:]           # cut by the limit: the first may be the end of a line
    return b''.join(lines[-count:]) if count else b''


class Follower:
    """What is appended to `path` from now on; `fd` is readable when it may have grown.
    `opener(path)` opens it for reading (a root daemon's opens no symbolic link)."""

    def __init__(self, path, opener=open_plain):
        self.path, self._opener = path, opener
        self.directory, self.base = os.path.split(path)
        self.fd = inotify.init()
        self._file, self._position = None, 0
        try:
            inotify.add_watch(self.fd, self.directory or '.', MASK)
            self._open(at_end=True)         # missing is fine (it may come); refused is not
        except OSError:
            os.close(self.fd)
            raise

    def _open(self, at_end):
        try:
            self._file = self._opener(self.path)
        except FileNotFoundError:
            self._file = None
            return
        self._position = self._file.seek(0, os.SEEK_END) if at_end else 0

    def _reopen(self):
        """The file again, from its start, after a rotation (if it is there yet)."""
        try:
            self._open(at_end=False)
        except OSError:
            self._file = None

    def backlog(self, count):
        """The last `count` lines before where following began: with `read()`,
        every line once, none lost between the two."""
        return _lines_before(self._file, self._position, count) if self._file else b''

    def read(self, limit=1 << 62):
        """What was appended since the last call, at most `limit` bytes (ending
        with a whole line when there is more); b'' if nothing."""
        self.discard_events()
        if self._file is None:
            self._reopen()                      # it appeared (rotation with create)
            return self._read_more(limit) if self._file else b''
        data = self._read_more(limit)
        if len(data) < limit and self._at_end() and self._replaced():
            self._file.close()                  # the old file is read to its end:
            self._reopen()                      # on to the new one, from its start
            data += self._read_more(limit - len(data)) if self._file else b''
        return data

    def discard_events(self):
        """Empty `fd`: its events only say "look again" (reading the file says what)."""
        try:
            while os.read(self.fd, 65536):
                pass
        except BlockingIOError:
            pass

    def _read_more(self, limit):
        size = os.fstat(self._file.fileno()).st_size
        if size < self._position:               # copytruncate: it starts again
            self._position = 0
        self._file.seek(self._position)
        data = self._file.read(max(0, min(limit, size - self._position)))
        if len(data) == limit and b'\n' in data:
            data = data[:data.rindex(b'\n') + 1]  # the rest of the line comes next time
        self._position += len(data)
        return data

    def _at_end(self):
        """Everything the held file has was read (a piece cut at a line end was not)."""
        return self._position >= os.fstat(self._file.fileno()).st_size

    def _replaced(self):
        try:
            on_disk = os.stat(self.path)
        except OSError:
            return True
        held = os.fstat(self._file.fileno())
        return (on_disk.st_dev, on_disk.st_ino) != (held.st_dev, held.st_ino)

    def wait(self, timeout=None):
        """Block until the file may have changed, or `timeout` seconds."""
        select.select([self.fd], [], [], timeout)

    def close(self):
        if self._file is not None:
            self._file.close()
        os.close(self.fd)
