"""The worker file: `{"procs": [PROCESS, ...]}` plus the daemon's own keys."""
import hashlib

from .. import jsonfile
from ..config import (ConfigError, check_root_safe, daemon_keys, decode, default_state_file,
                      read_file, with_file)
from ..procspec import parse_process_list, uses_depends
from ..record import Record
from ..schema import REQUIRED, Key, Problems, check_object


class WorkerConfig(Record):
    path: str
    procs: tuple
    pid_file: str = None
    log_file: str = None
    state_file: str = None
    sha256: str = ''
    warnings: tuple = ()


WORKER_KEYS = daemon_keys((Key('procs', 'list of PROCESS', REQUIRED, 'may be empty',
                               lambda value: value),))


def parse_worker(doc, path, default_user, sha256=''):
    problems = Problems()
    fields = check_object(doc, WORKER_KEYS, '', problems, ignore_underscore=True)
    procs = ()
    if fields is not None and 'procs' in fields:
        procs = parse_process_list(fields['procs'], 'procs', problems, default_user)
    if problems:
        raise ConfigError(problems.messages)
    warnings = tuple('procs (%s): "depends" is ignored (accepted for compatibility)'
                     % jsonfile.quote(name) for name in uses_depends(fields['procs']))
    return WorkerConfig(path=path, procs=procs, pid_file=fields['pid_file'],
                        log_file=fields['log_file'],
                        state_file=fields['state_file'] or default_state_file(path),
                        sha256=sha256, warnings=warnings)


def load_worker(path, default_user, refuse_unsafe=False):
    """The worker file at `path`, or ConfigError. `refuse_unsafe`: a root worker."""
    data, info = read_file(path)
    if refuse_unsafe:
        check_root_safe(path, info)
    return with_file(path, lambda: parse_worker(decode(data), path, default_user,
                                                hashlib.sha256(data).hexdigest()))
