"""`dpd-ctl logs [-n N] [-f] NAME`: a process's log file, read here, with or
without a worker (SPEC 6.3). The file is the one the worker config names in
the process's `logs` key; `-f` follows it across rotation like `tail -F`
(inotify: a line is printed as soon as it is written).

It is read as the worker reads it for its control socket: whoever wrote the
worker file or runs the process may have put a link, a FIFO or a file of
root's in its place, and dpd-ctl may run as root. On a terminal, what the
process wrote is printed with its control characters escaped."""
import codecs
import os
import pwd
import sys

from .. import jsonfile
from ..printable import printable, printable_log
from ..safefile import UnsafePath, open_log_reader
from ..tail import Follower, last_lines
from .commands import EX_FAILED, EX_OK


class NoLog(Exception):
    pass


def log_source(config_path, name):
    """(path, opener) of the `logs` file of process `name` in the worker file (read
    leniently: a mistake elsewhere in it does not hide this process's logs)."""
    try:
        data, info = jsonfile.read_regular(config_path)
        doc = jsonfile.loads(data)
    except (OSError, ValueError) as err:
        raise NoLog('%s: %s' % (config_path, getattr(err, 'strerror', None) or err)) from None
    procs = doc.get('procs') if isinstance(doc, dict) else None
    for entry in procs if isinstance(procs, list) else ():
        if isinstance(entry, dict) and entry.get('name') == name:
            path = entry.get('logs')
            if not isinstance(path, str) or not os.path.isabs(path):
                raise NoLog('%s: process %s has no "logs" file' % (config_path, name))
            return path, _opener(_owners(entry, info))
    raise NoLog('%s: no process %s' % (config_path, name))


def _opener(owners):
    """No link, no FIFO, no stranger's file. (Not the node policy's paths: the
    worker may run with its own `--policy`, which dpd-ctl cannot know.)"""
    def opener(path):
        return os.fdopen(open_log_reader(path, owners), 'rb')
    return opener


def _owners(entry, info):
    """Whose file a log may be: root, the worker (dpd-ctl cannot tell its user: the
    file's owner, or whoever runs dpd-ctl) and the process's user, as the worker
    writes it (a file of anyone else is one planted there)."""
    owners = {0, os.geteuid(), info.st_uid}
    user = entry.get('user')
    try:
        owners.add(pwd.getpwnam(user if isinstance(user, str) else 'nobody').pw_uid)
    except KeyError:
        pass
    return owners


def logs(config_path, name, lines, follow, out=sys.stdout.buffer, err=sys.stderr):
    path, follower, out = None, None, _printer(out)
    try:
        path, opener = log_source(config_path, name)
        follower = Follower(path, opener) if follow else None
        out.write(follower.backlog(lines) if follow else last_lines(path, lines, opener=opener))
        out.flush()
    except NoLog as problem:
        err.write('dpd-ctl: %s\n' % printable(str(problem)))
        return EX_FAILED
    except OSError as problem:
        err.write('dpd-ctl: %s\n' % printable(_reason(path, problem)))
        if follower is not None:
            follower.close()
        return EX_FAILED
    if follower is None:
        return EX_OK
    try:
        while True:
            follower.wait()
            out.write(follower.read())
            out.flush()
    except (KeyboardInterrupt, BrokenPipeError):
        return EX_OK
    finally:
        follower.close()


def _reason(path, problem):
    if isinstance(problem, UnsafePath):
        return str(problem)                     # it names the path
    return '%s: %s' % (path, problem.strerror or problem)


def _printer(out):
    """`out`, or on a terminal what escapes the log's control characters first."""
    try:
        terminal = out.isatty()
    except (AttributeError, ValueError):
        terminal = False
    return _Terminal(out) if terminal else out


class _Terminal:
    """The log's bytes as text with its control characters escaped (`printable_log`);
    a piece that ends inside a UTF-8 character keeps its start for the next one."""

    def __init__(self, out):
        self.out = out
        self._decoder = codecs.getincrementaldecoder('utf-8')('replace')

    def write(self, data):
        self.out.write(printable_log(self._decoder.decode(data)).encode('utf-8'))

    def flush(self):
        self.out.flush()
