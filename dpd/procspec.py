"""PROCESS: one entry of a worker's `procs` or of a master's node list.

`PROCESS_KEYS` is the single description of the format: validation runs on it
and the README's reference table is generated from it.
"""
import functools
import re
import signal

from . import depends, healthspec, jsonfile, limitspec
from .digest import sha256_hex
from .record import Record
from .schema import (REQUIRED, Invalid, Key, absolute_path, boolean, check_object,
                     json_type, list_of, number, string)

NAME_PATTERN = re.compile(r'[A-Za-z0-9._@:-]{1,128}\Z')
USER_PATTERN = re.compile(r'[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?\Z')
ENV_NAME_PATTERN = re.compile(r'[^=\0]{1,256}\Z')
CLEAN_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'


def _name(value):
    value = string(value)
    if not NAME_PATTERN.match(value):
        raise Invalid('must be 1-128 of A-Z a-z 0-9 . _ - @ :, not %s' % jsonfile.quote(value))
    return value


def account_name(value):
    value = string(value)
    if not USER_PATTERN.match(value):
        raise Invalid('must be a user or group name (a letter or "_" first, at most 32 '
                      'of A-Z a-z 0-9 _ . -), not %s' % jsonfile.quote(value))
    return value


def _env(value):
    if not isinstance(value, dict):
        raise Invalid('must be an object of strings, not %s' % json_type(value))
    if plain_env(value):
        return tuple(sorted(value.items()))
    pairs = []
    for key, item in value.items():
        if not ENV_NAME_PATTERN.match(key):
            raise Invalid('has a bad variable name %s (empty, or with "=")' % jsonfile.quote(key))
        string(key)  # names reach execve too: a lone surrogate must fail here, not there
        try:
            pairs.append((key, string(item)))
        except Invalid as err:
            raise Invalid('[%s] %s' % (jsonfile.quote(key), err)) from None
    return tuple(sorted(pairs))


def plain_env(value):
    """True for the common env: ASCII names of 1-256 characters without "=" or NUL,
    ASCII string values without NUL (seen in C, joined once); else `_env` checks
    each pair and says which is wrong."""
    try:
        names, values = ''.join(value), ''.join(value.values())
    except TypeError:
        return False
    return names.isascii() and values.isascii() and '\0' not in names and \
        '=' not in names and '\0' not in values and all(0 < len(k) <= 256 for k in value)


def _umask(value):
    value = string(value)
    if not re.fullmatch(r'[0-7]{1,4}', value) or int(value, 8) > 0o777:
        raise Invalid('must be an octal string such as "022", not %s' % jsonfile.quote(value))
    return int(value, 8)


def _signal(value):
    value = string(value)
    name = value.upper() if value.upper().startswith('SIG') else 'SIG' + value.upper()
    try:
        number_ = signal.Signals[name]
    except KeyError:
        raise Invalid('must be a signal name such as "TERM", not %s' % jsonfile.quote(value)) from None
    if number_ in (signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU,
                   signal.SIGCHLD, signal.SIGCONT, signal.SIGWINCH, signal.SIGURG):
        raise Invalid('%s does not stop a process' % jsonfile.quote(value))
    return int(number_)


_checked_strings = list_of(string, max_items=4096)


def plain_strings(value):
    """True for a list of at most 4096 ASCII strings without NUL, as most are (seen
    in C, joined once): `_strings` then needs no check string by string."""
    if type(value) is not list or len(value) > 4096:
        return False
    try:
        joined = ''.join(value)
    except TypeError:
        return False
    return joined.isascii() and '\0' not in joined


def _strings(value):
    """Checked as `list_of(string)` does, plain lists at once (`plain_strings`)."""
    return tuple(value) if plain_strings(value) else _checked_strings(value)


PROCESS_KEYS = (
    Key('name', 'string', REQUIRED, 'unique in the file; 1-128 of `A-Z a-z 0-9 . _ - @ :`', _name),
    Key('run', 'string', REQUIRED, 'absolute path of the program (inside `chroot`); must exist '
        'and be executable when started', absolute_path),
    Key('args', 'list of strings', (), 'passed as argv[1:]; never through a shell', _strings),
    Key('user', 'string', None, 'a user name; if it does not exist when the process starts, that '
        'process is `failed`; a non-root worker can only run processes as itself', account_name,
        default_text='`"nobody"` when the worker is root; else the worker\'s own user'),
    Key('env', 'object string→string', (), 'the child gets a clean environment: `PATH=%s`, `HOME`, '
        '`USER`, `LOGNAME`, `SHELL` from the user\'s passwd entry, then `env` on top' % CLEAN_PATH,
        _env, default_text='`{}`'),
    Key('chroot', 'string', '/', 'absolute, existing directory; the process is chrooted there '
        'before it runs', absolute_path),
    Key('cwd', 'string', '/', 'working directory inside the chroot; a relative value is relative '
        'to the chroot\'s root (so `"."` is `/`)', string),
    Key('pid_file', 'string', None, 'absolute, as the worker sees it (outside any `chroot`); '
        'where the pid is written (`write_pid`) or read (`daemon`)', absolute_path),
    Key('write_pid', 'bool', True, 'the worker writes `pid_file` when the process starts and '
        'removes it when it ends', boolean),
    Key('logs', 'string', None, 'absolute, as the worker sees it; stdout and stderr are appended '
        'there; none: discarded', absolute_path),
    Key('daemon', 'bool', False, 'the program forks into the background and writes `pid_file` '
        'itself; needs `pid_file` and `write_pid: false`', boolean),
    Key('restart', 'bool', True, 'restart the process whenever it ends, whatever its exit status '
        '(at most 5 starts in any 60 s)', boolean),
    Key('group', 'string', None, 'the process also gets the user\'s supplementary groups',
        account_name, default_text='the user\'s primary group'),
    Key('umask', 'string, octal', 0o022, 'such as `"027"`', _umask, default_text='`"022"`'),
    Key('stop_signal', 'string', signal.SIGTERM, 'a signal name, `"TERM"` or `"SIGTERM"`',
        _signal, default_text='`"TERM"`'),
    Key('stop_timeout', 'number, seconds', 10.0, 'after it, the whole process group gets `KILL`',
        number(0, 86400)),
    Key('depends', 'list of names', (), 'other processes of this file that must be ready (or, '
        'for a `restart: false` one, have exited 0) before this one starts; stopped after it',
        list_of(_name, max_items=1000)),
    Key('notify', 'bool', False, 'the process says when it is ready, the systemd way '
        '(`sd_notify`: `READY=1`, `STATUS=`, `WATCHDOG=1`)', boolean),
    Key('watchdog', 'number, seconds', None, 'needs `notify`; no `WATCHDOG=1` for this long makes '
        'the process unhealthy', number(0.1, 86400)),
    Key('health', 'object', None, 'a check run against the process (see below)',
        healthspec.health),
    Key('limits', 'object', None, 'rlimits and the limits of the whole tree (see below)',
        limitspec.limits),
)
EXTENSION_KEYS = ('group', 'umask', 'stop_signal', 'stop_timeout', 'depends', 'notify',
                  'watchdog', 'health', 'limits')


class ProcessSpec(Record):
    """A validated PROCESS with every default filled in."""
    name: str
    run: str
    args: tuple
    user: str
    env: tuple          # sorted (name, value) pairs
    chroot: str
    cwd: str
    pid_file: str
    write_pid: bool
    logs: str
    daemon: bool
    restart: bool
    group: str
    umask: int
    stop_signal: int
    stop_timeout: float
    depends: tuple = ()
    notify: bool = False
    watchdog: float = None
    health: object = None      # a healthspec.HealthSpec
    limits: object = None      # a limitspec.Limits

    @functools.cached_property
    def fingerprint(self):
        """Equal for equal definitions: decides "changed" and adoption."""
        return sha256_hex(jsonfile.dumps(dict(self.public_record, env=self.env)).encode())

    @functools.cached_property
    def public_record(self):
        """Every field but `env` (secrets stay out of state files), as JSON values.
        Shared by every snapshot: never modify it. A key added after the first
        round is left out while it has its default, so a definition written
        before it existed keeps its fingerprint: an upgraded worker restarts
        nothing."""
        record = {}
        values = self.__dict__
        for name in PUBLIC_FIELDS:
            value = values[name]
            if OPTIONAL.get(name, ...) != value:
                record[name] = value.record if name in RECORDS else value
        record['args'] = list(self.args)
        if self.depends:
            record['depends'] = list(self.depends)
        return record

    @property
    def waits_for_ready(self):
        """It is `starting` until it says so (notify) or passes a check (health)."""
        return self.notify or self.health is not None

    @property
    def cwd_in_chroot(self):
        return self.cwd if self.cwd.startswith('/') else '/' + self.cwd


SPEC_FIELDS = ProcessSpec._fields
PUBLIC_FIELDS = tuple(name for name in SPEC_FIELDS if name != 'env')
# field -> its default, for the fields of round two (left out of fingerprints while unset)
OPTIONAL = {'depends': (), 'notify': False, 'watchdog': None, 'health': None, 'limits': None}
RECORDS = ('health', 'limits')     # fields whose value is a Record of its own


def spec_from_record(record):
    """A ProcessSpec from its public record (a state file's `definition`); env empty."""
    fields = dict(OPTIONAL, **record)
    fields['args'] = tuple(fields['args'])
    fields['depends'] = tuple(fields['depends'])
    if fields['limits'] is not None:
        fields['limits'] = limitspec.limits(fields['limits'])
    if fields['health'] is not None:
        fields['health'] = healthspec.health(fields['health'])
    return ProcessSpec(env=(), **fields)


def parse_process(value, path, problems, default_user):
    """A ProcessSpec, or None after adding every problem to `problems`."""
    before = problems.found
    fields = check_object(value, PROCESS_KEYS, path, problems)
    if fields is None or problems.found > before:
        return None
    if fields['daemon'] and (fields['pid_file'] is None or fields['write_pid']):
        problems.add(path, '"daemon": true needs "pid_file" and "write_pid": false '
                     '(the program writes its own pid file)')
        return None
    if fields['watchdog'] is not None and not fields['notify']:
        problems.add(path + '.watchdog', 'needs "notify": true (WATCHDOG=1 comes by sd_notify)')
        return None
    if fields['user'] is None:
        fields['user'] = default_user
    return ProcessSpec(**fields)


def process_label(path, value):
    """`procs[2] ("web")`: the path of an entry, with its name when it has one."""
    name = value.get('name') if isinstance(value, dict) else None
    return '%s (%s)' % (path, jsonfile.quote(name)) if isinstance(name, str) else path


def parse_process_list(value, path, problems, default_user):
    """The specs of a `procs` list; names and pid files must be unique."""
    if not isinstance(value, list):
        problems.add(path, 'must be a list of processes, not %s' % json_type(value))
        return ()
    specs, labels, seen_names, seen_pid_files = [], [], {}, {}
    for index, item in enumerate(value):
        if problems.over:
            break
        label = process_label('%s[%d]' % (path, index), item)
        spec = parse_process(item, label, problems, default_user)
        if spec is None:
            continue
        labels.append(label)
        if spec.name in seen_names:
            problems.add(label, 'duplicate name %s (also %s[%d])'
                         % (jsonfile.quote(spec.name), path, seen_names[spec.name]))
        seen_names.setdefault(spec.name, index)
        if spec.pid_file and spec.pid_file in seen_pid_files:
            problems.add(label, 'pid_file %s is also the pid file of %s'
                         % (jsonfile.quote(spec.pid_file), jsonfile.quote(seen_pid_files[spec.pid_file])))
        if spec.pid_file:
            seen_pid_files.setdefault(spec.pid_file, spec.name)
        specs.append(spec)
    named = {item['name'] for item in value if isinstance(item, dict)
             and isinstance(item.get('name'), str)}
    for label, problem in depends.problems_of(specs, labels, named):
        problems.add(label + '.depends', problem)
    return tuple(specs)
