"""`dpd-ctl logs [-n N] [-f] NAME`: a process's log file, read here, with or
without a worker (SPEC 6.3). The file is the one the worker config names in
the process's `logs` key; `-f` follows it across rotation like `tail -F`
(inotify: a line is printed as soon as it is written)."""
import os
import sys

from .. import jsonfile
from ..tail import Follower, last_lines
from .commands import EX_FAILED, EX_OK


class NoLog(Exception):
    pass


def log_path(config_path, name):
    """The `logs` file of process `name` in the worker file (read leniently: a
    mistake elsewhere in it does not hide this process's logs)."""
    try:
        doc = jsonfile.loads(jsonfile.read_regular(config_path)[0])
    except (OSError, ValueError) as err:
        raise NoLog('%s: %s' % (config_path, getattr(err, 'strerror', None) or err)) from None
    procs = doc.get('procs') if isinstance(doc, dict) else None
    for entry in procs if isinstance(procs, list) else ():
        if isinstance(entry, dict) and entry.get('name') == name:
            path = entry.get('logs')
            if not isinstance(path, str) or not os.path.isabs(path):
                raise NoLog('%s: process %s has no "logs" file' % (config_path, name))
            return path
    raise NoLog('%s: no process %s' % (config_path, name))


def logs(config_path, name, lines, follow, out=sys.stdout.buffer, err=sys.stderr):
    try:
        path = log_path(config_path, name)
        follower = Follower(path) if follow else None
        out.write(follower.backlog(lines) if follow else last_lines(path, lines))
        out.flush()
    except NoLog as problem:
        err.write('dpd-ctl: %s\n' % problem)
        return EX_FAILED
    except OSError as problem:
        err.write('dpd-ctl: %s: %s\n' % (path, problem.strerror or problem))
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
