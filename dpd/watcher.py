"""File watcher threads: see a file's edits and report them at once.

It watches the file's directory with inotify for what happens to the name
(a replacement by rename, a new file, a removal, a chmod), and the file itself
for writes: the directory also holds the daemon's state file and journal,
whose every write would otherwise wake this thread (a third of a millisecond
of a worker's restart). Both an edit in place and a replacement by rename are
seen within milliseconds. A file is read when its writer closes it or renames
it into place; a write that is never closed is read after SETTLE seconds of
quiet, so a half-written file is at worst rejected, never applied half.
Without inotify, or while the directory is missing, it falls back to a stat
every POLL seconds. The config watcher posts a result only when it differs from
the last one: ConfigLoaded, or ConfigRejected; or whatever it is when asked to
`recheck()` (a HUP), so a reload takes the same road as an edit.
"""
import os
import select
import time

from . import inotify
from .config import ConfigError
from .events import ConfigLoaded, ConfigRejected
from .observer import Observer
from .safefile import file_stamp

SETTLE = 0.3
POLL = 0.5
READ_NOW = (inotify.IN_CLOSE_WRITE | inotify.IN_MOVED_TO | inotify.IN_ATTRIB |
            inotify.IN_DELETE | inotify.IN_MOVED_FROM)
READ_LATER = inotify.IN_MODIFY | inotify.IN_CREATE
NEW_FILE = inotify.IN_CREATE | inotify.IN_MOVED_TO      # the name has another file now
DIR_GONE = inotify.IN_DELETE_SELF | inotify.IN_MOVE_SELF | inotify.IN_IGNORED
# no writes in the directory: they are the file watch's, of the file alone
DIR_MASK = (inotify.IN_MOVED_TO | inotify.IN_ATTRIB | inotify.IN_DELETE | inotify.IN_MOVED_FROM |
            inotify.IN_CREATE | inotify.IN_DELETE_SELF | inotify.IN_MOVE_SELF | inotify.IN_ONLYDIR)
FILE_MASK = inotify.IN_CLOSE_WRITE | inotify.IN_MODIFY


class FileWatcher(Observer):
    """Calls `changed()` (in this thread) whenever the file may have changed."""

    def __init__(self, path, post, name='watcher'):
        super().__init__(name, post)
        self.path = path
        self.directory, self.base = os.path.split(path)
        self._stamp = None
        self._recheck = False
        self._dir_wd = None         # the directory's watch; None: polling
        self._file_wd = None        # the watch of the file's writes, while it exists

    def recheck(self):
        """From any thread: read the file now and report it even if unchanged."""
        self._recheck = True
        self.wake()

    def observe(self):
        try:
            notify_fd = inotify.init()
        except OSError:
            notify_fd = None
        poller = select.epoll()
        poller.register(self.wake_r, select.EPOLLIN)
        if notify_fd is not None:
            poller.register(notify_fd, select.EPOLLIN)
        self._dir_wd = self._add_watch(notify_fd)
        self._check()
        settle_at = None
        while not self.stopping:
            now = time.monotonic()
            timeouts = [POLL] if self._dir_wd is None else []
            if settle_at is not None:
                timeouts.append(max(0.0, settle_at - now))
            ready = poller.poll(min(timeouts) if timeouts else -1)
            if self.stopping:
                break
            if not ready:  # a timeout: settling time over, or a stat poll
                polling, settle_at = settle_at is None, None
                if self._dir_wd is None:
                    self._dir_wd = self._add_watch(notify_fd)
                self._check(only_if_touched=polling)
                continue
            for fd, _ in ready:
                if fd == self.wake_r:
                    self.read_wakeups()
                    if self._recheck:
                        self._recheck = False
                        self._stamp = self._file_stamp()
                        self.changed(force=True)
                elif fd == notify_fd:
                    read_now, read_later, gone = self._read_events(notify_fd)
                    if gone:
                        self._dir_wd = None
                    if read_now:
                        settle_at = None
                        self._check()
                    elif read_later:
                        settle_at = time.monotonic() + SETTLE

    def _add_watch(self, notify_fd):
        if notify_fd is None:
            return None
        try:
            wd = inotify.add_watch(notify_fd, self.directory or '.', DIR_MASK)
        except OSError:
            return None
        self._watch_file(notify_fd)
        return wd

    def _watch_file(self, notify_fd):
        """Watch the writes of the file the name holds now (its target, for a
        symbolic link). A file written before this watch began is read after
        SETTLE: its creation said READ_LATER."""
        try:
            self._file_wd = inotify.add_watch(notify_fd, self.path, FILE_MASK)
        except OSError:
            self._file_wd = None        # no file yet: its creation will say so

    def _read_events(self, notify_fd):
        read_now = read_later = gone = False
        try:
            data = os.read(notify_fd, 65536)
        except BlockingIOError:
            return False, False, False
        for wd, mask, name in inotify.parse(data):
            if wd == self._file_wd and wd is not None:
                if mask & inotify.IN_IGNORED:
                    self._file_wd = None    # that file is gone; the directory says why
                read_now |= bool(mask & inotify.IN_CLOSE_WRITE)
                read_later |= bool(mask & inotify.IN_MODIFY)
            elif mask & DIR_GONE and not name:
                if mask & inotify.IN_IGNORED and wd != self._dir_wd:
                    continue                # the watch of a file replaced since
                gone = read_now = True
            elif mask & inotify.IN_Q_OVERFLOW:
                read_now = True
            elif not name and mask & inotify.IN_ATTRIB:
                read_now = True  # the directory's own mode: part of a root worker's check
            elif name == self.base:
                if mask & NEW_FILE:
                    self._watch_file(notify_fd)
                read_now |= bool(mask & READ_NOW)
                read_later |= bool(mask & READ_LATER)
        return read_now, read_later, gone

    def _check(self, only_if_touched=False):
        """A stat poll looks closer only when the file's stamp moved; an inotify
        event always does (two writes in one timestamp tick share a stamp)."""
        stamp = self._file_stamp()
        if only_if_touched and stamp == self._stamp:
            return
        self._stamp = stamp
        self.changed()

    def changed(self, force=False):
        """The file may have changed (`force`: report it even if it has not)."""
        raise NotImplementedError

    def _file_stamp(self):
        return file_stamp(self.path)


class ConfigWatcher(FileWatcher):
    """Posts ConfigLoaded or ConfigRejected when the result differs from the last."""

    def __init__(self, path, load, post, known_sha256=None):
        super().__init__(path, post)
        self.load = load
        self._last = ('ok', known_sha256) if known_sha256 else None

    def changed(self, force=False):
        try:
            config = self.load(self.path)
        except ConfigError as err:
            result, event = ('bad', tuple(err.messages)), ConfigRejected(tuple(err.messages))
        else:
            result, event = ('ok', config.sha256), ConfigLoaded(config, time.time())
        if force or result != self._last:
            self._last = result
            self.post(event)
