"""What the three config files share: errors, daemon keys, reading, root safety.

Each daemon's own file is described in its room (`worker/config.py`,
`cluster/config.py`). Parsing is pure (`parse_*` take decoded JSON); `load_*`
add the file: reading it safely, the JSON syntax, and for a root worker the
permissions that keep other users from writing commands root will run. Every
problem becomes one line "FILE: JSON-PATH: PROBLEM" in `ConfigError.messages`.
"""
import os
import stat

from . import jsonfile
from .schema import Key, absolute_path

MANAGED_RECORD = '_diprocd'     # the client's record in a worker file it manages


class ConfigError(Exception):
    def __init__(self, messages):
        super().__init__('\n'.join(messages))
        self.messages = list(messages)


def default_state_file(config_path):
    """CONFIG.state.json, CONFIG resolved: what a daemon derives from its config's
    path comes from the file itself, so one config reached by two paths (a
    symbolic link) is one daemon, with one lock and one state (SPEC 5.2)."""
    real = os.path.realpath(config_path)
    return (real[:-len('.json')] if real.endswith('.json') else real) + '.state.json'


def lock_path(config):
    """The file whose lock means "this daemon runs": pid_file, else CONFIG.lock
    (CONFIG resolved, as for the state file)."""
    return config.pid_file or os.path.realpath(config.path) + '.lock'


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
    lock = pid_file if isinstance(pid_file, str) else os.path.realpath(config_path) + '.lock'
    return lock, state_file if isinstance(state_file, str) else default_state_file(config_path)


def daemon_keys(extra=()):
    """The keys every daemon's file has, then `extra`."""
    return (Key('pid_file', 'string', None, 'absolute path; the daemon\'s pid, and its lock',
                absolute_path),
            Key('log_file', 'string', None, 'absolute path; the daemon\'s own log (in the '
                'foreground too); none: syslog when detached', absolute_path),
            Key('state_file', 'string', None, 'absolute path where the daemon publishes its state',
                absolute_path, default_text='CONFIG with `.json` replaced by `.state.json`'),
            ) + tuple(extra)


def both_or_neither(fields, first, second, problems):
    if (fields.get(first) is None) != (fields.get(second) is None):
        given, missing = (first, second) if fields.get(first) else (second, first)
        problems.add('', '"%s" is set but "%s" is not: give both keys, or neither'
                     % (given, missing))


# ------------------------------------------------------------------ files

def read_file(path, limit=jsonfile.MAX_FILE_BYTES):
    """(bytes, stat) of a config file, or ConfigError naming it."""
    try:
        return jsonfile.read_regular(path, limit)
    except jsonfile.JsonError as err:
        raise ConfigError(['%s: %s' % (path, err)]) from None
    except OSError as err:
        raise ConfigError(['%s: cannot read: %s' % (path, err.strerror or err)]) from None


def decode(data):
    if not data.strip():
        raise ConfigError(['the file is empty (to run nothing, write {"procs": []})'])
    try:
        return jsonfile.loads(data)
    except jsonfile.JsonError as err:
        raise ConfigError([str(err)]) from None


def with_file(path, parse):
    """parse(), its errors prefixed with the file's path."""
    try:
        return parse()
    except ConfigError as err:
        raise ConfigError(['%s: %s' % (path, message) for message in err.messages]) from None


def check_root_safe(path, info):
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
