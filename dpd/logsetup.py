"""The daemons' own log: one line per event, ISO-8601 time, level, program.

Targets: stderr in the foreground; `log_file` when set (in the foreground
too); syslog when detached without a `log_file`. The file is reopened on
USR1 and when it was moved or deleted (checked at most once a second), so
logrotate works with or without a postrotate signal.
"""
import logging
import os
import sys
import time

from .printable import printable
from .safefile import open_log, same_file

ROTATION_CHECK_SECONDS = 1.0


class Formatter(logging.Formatter):
    def __init__(self, program, with_time=True):
        super().__init__()
        self.program, self.with_time = program, with_time

    def format(self, record):
        # one event, one line: what the message quotes from files or peers is escaped
        text = '%s %s[%d]: %s' % (record.levelname, self.program, record.process,
                                  printable(record.getMessage()))
        if record.exc_info:
            text += '\n' + self.formatException(record.exc_info)
        if not self.with_time:
            return text
        return '%s %s' % (iso_time(record.created), text)


def iso_time(when):
    """ISO-8601 local time with milliseconds and offset: 2026-11-28T10:00:01.250+01:00."""
    local = time.localtime(when)
    offset = local.tm_gmtoff
    sign = '-' if offset < 0 else '+'
    return '%s.%03d%s%02d:%02d' % (time.strftime('%Y-%m-%dT%H:%M:%S', local),
                                   int(when % 1 * 1000), sign, abs(offset) // 3600,
                                   abs(offset) // 60 % 60)


class ReopeningFileHandler(logging.Handler):
    """Appends to a file opened root-safely; follows rotation."""

    def __init__(self, path):
        super().__init__()
        self.path = path
        self.fd = None
        self.next_check = 0.0
        self._open()

    def _open(self):
        self.fd = open_log(self.path, {os.geteuid()}, append=True)

    def reopen(self):
        with self.lock:
            self._close()
            self._open()

    def emit(self, record):
        try:
            line = (self.format(record) + '\n').encode('utf-8', 'replace')
            with self.lock:
                self._follow_rotation()
                os.write(self.fd, line)
        except Exception:
            self.handleError(record)

    def _follow_rotation(self):
        now = time.monotonic()
        if now < self.next_check:
            return
        self.next_check = now + ROTATION_CHECK_SECONDS
        if same_file(self.fd, self.path):
            return
        self._close()
        self._open()

    def _close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def close(self):
        with self.lock:
            self._close()
        super().close()


class DaemonLog:
    """Configures the `dpd` logger for one daemon and reopens its file on demand."""

    def __init__(self, program, verbose):
        self.program = program
        self.logger = logging.getLogger('dpd')
        self.logger.setLevel(logging.DEBUG if verbose else logging.INFO)
        self.logger.propagate = False
        self.file_handler = None

    def to_stderr(self):
        self._add(logging.StreamHandler(sys.stderr), Formatter(self.program))

    def to_file(self, path):
        os.makedirs(os.path.dirname(path), 0o755, exist_ok=True)
        self.file_handler = ReopeningFileHandler(path)
        self._add(self.file_handler, Formatter(self.program))

    def to_syslog(self):
        """To syslog; False if there is none (no /dev/log: a container, say)."""
        if not os.path.exists('/dev/log'):
            return False  # the handler would print a traceback at every line
        import logging.handlers   # only here: it brings pickle, 1-2 MiB a daemon rarely needs
        handler = logging.handlers.SysLogHandler(
            '/dev/log', facility=logging.handlers.SysLogHandler.LOG_DAEMON)
        self._add(handler, Formatter(self.program, with_time=False))
        return True

    def _add(self, handler, formatter):
        handler.setFormatter(formatter)
        self.logger.addHandler(handler)

    def reopen(self):
        if self.file_handler is not None:
            try:
                self.file_handler.reopen()
            except OSError as err:
                self.logger.error('cannot reopen %s: %s', self.file_handler.path, err)
