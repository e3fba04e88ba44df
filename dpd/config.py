"""The three config files: read from disk, checked, turned into frozen records.

Parsing is pure (`parse_*` take decoded JSON); `load_*` add the file: reading
it safely, the JSON syntax, and for a root worker the permissions that keep
other users from writing commands root will run. Every problem becomes one
line "FILE: JSON-PATH: PROBLEM" in `ConfigError.messages`.
"""
import hashlib
import os
import re
import stat

from . import jsonfile
from .procspec import account_name, parse_process_list, uses_depends
from .record import Record
from .schema import (REQUIRED, Invalid, Key, Problems, absolute_path, check_object, json_type,
                     list_of, string)


class ConfigError(Exception):
    def __init__(self, messages):
        super().__init__('\n'.join(messages))
        self.messages = list(messages)


def default_state_file(config_path):
    base = config_path[:-len('.json')] if config_path.endswith('.json') else config_path
    return base + '.state.json'


def lock_path(config):
    """The file whose lock means "this daemon runs": pid_file, else CONFIG.lock."""
    return config.pid_file or config.path + '.lock'


def daemon_files(config_path):
    """(lock path, state path) of the daemon of a config, read leniently: even a
    broken file, which the daemon rejected, still names its pid and state files."""
    pid_file = state_file = None
    try:
        doc = jsonfile.loads(jsonfile.read_regular(config_path)[0])
        if isinstance(doc, dict):
            pid_file, state_file = doc.get('pid_file'), doc.get('state_file')
    except (OSError, ValueError):
        pass
    lock = pid_file if isinstance(pid_file, str) else config_path + '.lock'
    return lock, state_file if isinstance(state_file, str) else default_state_file(config_path)


# ------------------------------------------------------------------ worker

class WorkerConfig(Record):
    path: str
    procs: tuple
    pid_file: str = None
    log_file: str = None
    state_file: str = None
    sha256: str = ''
    warnings: tuple = ()


def _daemon_keys(extra=()):
    return (Key('pid_file', 'string', None, 'absolute path; the daemon\'s pid, and its lock',
                absolute_path),
            Key('log_file', 'string', None, 'absolute path; the daemon\'s own log (in the '
                'foreground too); none: syslog when detached', absolute_path),
            Key('state_file', 'string', None, 'absolute path where the daemon publishes its state',
                absolute_path, default_text='CONFIG with `.json` replaced by `.state.json`'),
            ) + tuple(extra)


WORKER_KEYS = _daemon_keys((Key('procs', 'list of PROCESS', REQUIRED, 'may be empty',
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
    data, info = _read(path)
    if refuse_unsafe:
        _check_root_safe(path, info)
    return _with_file(path, lambda: parse_worker(_decode(data), path, default_user,
                                                 hashlib.sha256(data).hexdigest()))


# ------------------------------------------------------------------ client

ENDPOINT = re.compile(r'(tcp://(\*|\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):([0-9]{1,5})'
                      r'|ipc://[^\0]+)\Z')


def endpoint(value):
    value = string(value)
    match = ENDPOINT.match(value)
    if not match or (match.group(3) and not 0 < int(match.group(3)) < 65536):
        raise Invalid('must be a ZeroMQ endpoint such as "tcp://192.0.2.1:31123" or '
                      '"ipc:///run/diprocd/stats", not %s' % jsonfile.quote(value))
    return value


def is_local_endpoint(value):
    """True for ipc:// and loopback tcp:// endpoints (no keys needed there)."""
    if value.startswith('ipc://'):
        return True
    host = value[len('tcp://'):].rsplit(':', 1)[0].strip('[]')
    return host in ('localhost', '::1') or host.startswith('127.')


def _node_name(value):
    value = string(value)
    if not re.fullmatch(r'[A-Za-z0-9._@:%-]{1,253}', value):
        raise Invalid('must be 1-253 of A-Z a-z 0-9 . _ - @ : (and %%H for the host name), '
                      'not %s' % jsonfile.quote(value))
    return value


class ClientConfig(Record):
    path: str
    master_stats: str
    master_updates: str
    node_name: str
    conf_file: str
    pid_file: str = None
    log_file: str = None
    state_file: str = None
    master_public_key: str = None
    secret_key: str = None
    allowed_users: tuple = None
    sha256: str = ''


CLIENT_KEYS = _daemon_keys((
    Key('master_stats', 'string', REQUIRED, 'ZeroMQ endpoint of the master\'s stats socket',
        endpoint),
    Key('master_updates', 'string', REQUIRED, 'ZeroMQ endpoint of the master\'s updates socket',
        endpoint),
    Key('node_name', 'string', '%H', 'this node\'s name; `%H` becomes the host name',
        _node_name),
    Key('conf_file', 'string', REQUIRED, 'absolute path of the worker file to keep',
        absolute_path),
    Key('master_public_key', 'string', None, 'path of the master\'s public key file; with '
        '`secret_key`', absolute_path),
    Key('secret_key', 'string', None, 'path of this node\'s secret key file (mode 0600); with '
        '`master_public_key`', absolute_path),
    Key('allowed_users', 'list of strings', None, 'users this node accepts from the master; '
        '`root` only when listed', list_of(account_name, max_items=1000), default_text='any user except `root`'),
))


def parse_client(doc, path, sha256=''):
    problems = Problems()
    fields = check_object(doc, CLIENT_KEYS, '', problems, ignore_underscore=True)
    if fields is not None:
        _both_or_neither(fields, 'master_public_key', 'secret_key', problems)
    if problems:
        raise ConfigError(problems.messages)
    fields['state_file'] = fields['state_file'] or default_state_file(path)
    return ClientConfig(path=path, sha256=sha256, **fields)


def load_client(path):
    data, _ = _read(path)
    return _with_file(path, lambda: parse_client(_decode(data), path,
                                                 hashlib.sha256(data).hexdigest()))


def _both_or_neither(fields, first, second, problems):
    if (fields.get(first) is None) != (fields.get(second) is None):
        given, missing = (first, second) if fields.get(first) else (second, first)
        problems.add('', '"%s" is set but "%s" is not: give both keys, or neither'
                     % (given, missing))


# ------------------------------------------------------------------ master

class NodeList(Record):
    """One node's list in the master file: its raw entries, or why it is invalid."""
    entries: tuple = None     # the raw JSON entries, when valid
    errors: tuple = ()

    @property
    def valid(self):
        return not self.errors


class MasterConfig(Record):
    path: str
    master_stats: str
    master_updates: str
    nodes: dict                 # node name -> NodeList
    pid_file: str = None
    log_file: str = None
    state_file: str = None
    secret_key: str = None
    authorized_keys: str = None
    sha256: str = ''


def _nodes_object(value):
    if not isinstance(value, dict):
        raise Invalid('must be an object of node name -> list of processes, not %s'
                      % json_type(value))
    for name in value:
        _node_name(name)
    return value


MASTER_KEYS = _daemon_keys((
    Key('master_stats', 'string', REQUIRED, 'endpoint the master binds for HELLO/REPORT/STATE',
        endpoint),
    Key('master_updates', 'string', REQUIRED, 'endpoint the master binds for notifications',
        endpoint),
    Key('nodes', 'object', REQUIRED, 'node name → list of PROCESS; a node absent is left alone',
        _nodes_object),
    Key('secret_key', 'string', None, 'the master\'s secret key file (mode 0600); with '
        '`authorized_keys`', absolute_path),
    Key('authorized_keys', 'string', None, 'directory of node public keys, one `NODE.key` per '
        'node; with `secret_key`', absolute_path),
))


def parse_master(doc, path, sha256=''):
    """The master file; a node whose list is invalid is kept with its errors."""
    problems = Problems()
    fields = check_object(doc, MASTER_KEYS, '', problems, ignore_underscore=True)
    if fields is not None:
        _both_or_neither(fields, 'secret_key', 'authorized_keys', problems)
    if problems:
        raise ConfigError(problems.messages)
    nodes = {}
    for node, entries in fields.pop('nodes').items():
        node_problems = Problems()
        parse_process_list(entries, 'nodes[%s]' % jsonfile.quote(node), node_problems, 'nobody')
        nodes[node] = (NodeList(errors=tuple(node_problems.messages)) if node_problems
                       else NodeList(entries=tuple(entries)))
    fields['state_file'] = fields['state_file'] or default_state_file(path)
    return MasterConfig(path=path, nodes=nodes, sha256=sha256, **fields)


def load_master(path):
    data, _ = _read(path)
    return _with_file(path, lambda: parse_master(_decode(data), path,
                                                 hashlib.sha256(data).hexdigest()))


# ------------------------------------------------------------------ files

def _read(path):
    try:
        return jsonfile.read_regular(path)
    except jsonfile.JsonError as err:
        raise ConfigError(['%s: %s' % (path, err)]) from None
    except OSError as err:
        raise ConfigError(['%s: cannot read: %s' % (path, err.strerror or err)]) from None


def _decode(data):
    if not data.strip():
        raise ConfigError(['the file is empty (to run nothing, write {"procs": []})'])
    try:
        return jsonfile.loads(data)
    except jsonfile.JsonError as err:
        raise ConfigError([str(err)]) from None


def _with_file(path, parse):
    try:
        return parse()
    except ConfigError as err:
        raise ConfigError(['%s: %s' % (path, message) for message in err.messages]) from None


def _check_root_safe(path, info):
    """SPEC 5: whoever can write a root worker's file can run anything as root."""
    if info.st_mode & 0o022:
        raise ConfigError(['%s: refused: the file is group- or world-writable (mode %04o); '
                           'whoever can write it could run anything as root'
                           % (path, stat.S_IMODE(info.st_mode))])
    # the directory of the link and of the file it leads to: either one lets its
    # writers swap the file
    for directory in sorted({os.path.dirname(path), os.path.dirname(os.path.realpath(path))}):
        _check_root_safe_directory(path, directory or '/', info.st_uid)


def _check_root_safe_directory(path, directory, owner):
    try:
        dir_info = os.stat(directory)
    except OSError as err:
        raise ConfigError(['%s: cannot check its directory: %s' % (path, err.strerror)]) from None
    if dir_info.st_mode & stat.S_ISVTX:
        return
    others_write = dir_info.st_mode & 0o022
    stranger_owns = dir_info.st_uid not in (0, owner) and dir_info.st_mode & 0o200
    if others_write or stranger_owns:
        raise ConfigError(['%s: refused: its directory %s is writable by users other than the '
                           'file\'s owner and root (mode %04o, owner uid %d) and not sticky'
                           % (path, directory, stat.S_IMODE(dir_info.st_mode), dir_info.st_uid)])
