"""The worker file: `{"procs": [PROCESS, ...]}` plus the daemon's own keys."""
import os

from .. import nodepolicy
from ..control import socket_path
from ..digest import sha256_hex
from ..config import (MANAGED_RECORD, ConfigError, check_root_safe, daemon_keys, decode,
                      default_state_file, lock_path, read_file, with_file)
from ..procspec import parse_process_list
from ..record import Record
from ..schema import REQUIRED, Key, Problems, absolute_path, check_object
from . import journal


class WorkerConfig(Record):
    path: str
    procs: tuple
    pid_file: str = None
    log_file: str = None
    state_file: str = None
    metrics_file: str = None  # Prometheus text, kept current (SPEC 6.4)
    sha256: str = ''
    warnings: tuple = ()
    confine: tuple = None     # the node policy's directories, when it applies (SPEC 5.1)


WORKER_KEYS = daemon_keys((
    Key('procs', 'list of PROCESS', REQUIRED, 'may be empty', lambda value: value),
    Key('metrics_file', 'string', None, 'absolute path the worker keeps current in the '
        'Prometheus text format, e.g. in node_exporter\'s textfile directory (a name '
        'ending in `.prom`); see Monitoring', absolute_path),
))


def parse_worker(doc, path, default_user, sha256=''):
    problems = Problems()
    fields = check_object(doc, WORKER_KEYS, '', problems, ignore_underscore=True)
    procs = ()
    if fields is not None and 'procs' in fields:
        procs = parse_process_list(fields['procs'], 'procs', problems, default_user)
    if problems:
        raise ConfigError(problems.messages)
    config = WorkerConfig(path=path, procs=procs, pid_file=fields['pid_file'],
                          log_file=fields['log_file'],
                          state_file=fields['state_file'] or default_state_file(path),
                          metrics_file=fields['metrics_file'], sha256=sha256)
    _check_own_files(config)
    return config


def _check_own_files(config):
    """No top-level path may be another file the worker uses, nor lie inside its FIFO
    directory (SPEC 5.1): `metrics_file` on CONFIG.lock, say, is renamed over the
    held lock, and a second worker (cron) then takes a lock of its own."""
    problems = nodepolicy.clashes(worker_files(config))
    if problems:
        raise ConfigError(problems)


def worker_files(config):
    """Each file the worker uses itself (nodepolicy.OwnFile), in the order the
    clashes between them are judged: its own keys' last."""
    state, own = config.state_file, nodepolicy.OwnFile
    files = [own('', 'the worker file itself', config.path)]
    if config.pid_file is None:
        files.append(own('', 'the worker\'s lock', lock_path(config)))
    files += [own('pid_file', 'the worker\'s pid_file', config.pid_file),
              own('log_file', 'the worker\'s log_file', config.log_file),
              own('state_file', 'the worker\'s state_file', state),
              own('state_file', 'the worker\'s journal', journal.path_of(state), derived=True),
              own('state_file', 'the worker\'s control socket', socket_path(state),
                  derived=True),
              own('state_file', 'the worker\'s FIFO directory', fifo_dir(config),
                  directory=True, derived=True),
              own('metrics_file', 'the worker\'s metrics_file', config.metrics_file)]
    return tuple(f for f in files if f.path)


def load_worker(path, default_user, root=False, policy=None):
    """The worker file at `path`, or ConfigError. A root worker refuses a file others
    can write, and holds a file root does not own, or that a client manages, to
    the node policy `policy`."""
    data, info = read_file(path)
    if root:
        check_root_safe(path, info)

    def parse():
        doc = decode(data)
        config = parse_worker(doc, path, default_user, sha256_hex(data))
        if root and policy is not None and (info.st_uid != 0 or MANAGED_RECORD in doc):
            return _held_to(policy, config, doc, default_user)
        return config
    return with_file(path, parse)


def _held_to(policy, config, doc, default_user):
    errors = nodepolicy.check_document(doc, policy, default_user, own_files(config))
    if errors:
        raise ConfigError(errors + ['refused by the node policy (%s): the file is not root\'s '
                                    'own or a client manages it' % policy.describe()])
    return config._replace(confine=policy.confine)


def fifo_dir(config):
    """Where the children's output FIFOs live: private, beside the state file."""
    base = config.state_file[:-len('.json')] if config.state_file.endswith('.json') \
        else config.state_file
    return base + '.fifos'


def own_files(config):
    """The paths the worker itself uses: no process may be given one of them."""
    return tuple(os.path.normpath(f.path) for f in worker_files(config))
