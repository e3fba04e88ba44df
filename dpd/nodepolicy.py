"""The node policy (SPEC 5.1): what root does on behalf of someone else.

A root worker runs whatever its file says as whichever user, and opens,
creates and removes the files it names. When that file comes from the
master (it holds a `_diprocd` record) or belongs to another user, its
author is not root, so what root does for it must stay inside what the
node's own root allows: which users and groups processes may run as, and
below which directories root may open or create files. The check is pure
(`check_document`), run by the worker's loader after the schema, so a
breach is a rejected file like any other; the client runs the same check
before it writes a list.
"""
import grp
import os
import pwd
import stat

from . import jsonfile
from .config import ConfigError, decode, read_file, with_file
from .procspec import account_name, process_label
from .record import Record
from .safefile import is_below
from .schema import Invalid, Key, Problems, check_object, list_of, string

DEFAULT_FILE = '/etc/diprocd/policy.json'
DEFAULT_PATHS = ('/var/log/diprocd', '/run/diprocd', '/var/lib/diprocd')
ANY = '*'
PROCESS_PATH_KEYS = ('logs', 'pid_file', 'chroot')
DAEMON_PATH_KEYS = ('pid_file', 'log_file', 'state_file', 'metrics_file')


def _allowed_path(value):
    value = string(value)
    if not value.startswith('/') or '..' in value.split('/'):
        raise Invalid('must be an absolute directory without "..", not %s'
                      % jsonfile.quote(value))
    return os.path.normpath(value)


def _accounts_or_any(value):
    value = string(value)
    return value if value == ANY else account_name(value)


POLICY_KEYS = (
    Key('allowed_users', 'list of strings', None, 'users a process may run as; `"*"`: any, '
        '`root` included', list_of(_accounts_or_any, max_items=1000),
        default_text='every user except `root` (any account of uid 0)'),
    Key('allowed_groups', 'list of strings', (), 'groups a process may be given with `group` '
        'beyond its user\'s own; `"*"`: any', list_of(_accounts_or_any, max_items=1000),
        default_text='none'),
    Key('allowed_paths', 'list of strings', DEFAULT_PATHS, 'directories below which every '
        'file root opens or creates for the file must lie', list_of(_allowed_path, 1000),
        default_text='`%s`' % jsonfile.dumps(list(DEFAULT_PATHS))),
)


class NodePolicy(Record):
    allowed_users: tuple = None       # None: every user except root
    allowed_groups: tuple = ()
    allowed_paths: tuple = DEFAULT_PATHS
    path: str = None                  # the file it was read from
    missing: bool = False             # there is no such file: the defaults

    def allows_user(self, user):
        if self.allowed_users is None:
            return user != 'root'
        return ANY in self.allowed_users or user in self.allowed_users

    def allows_group(self, group, own_groups):
        return group in own_groups or ANY in self.allowed_groups or \
            group in self.allowed_groups

    @property
    def confine(self):
        """The allowed directories as the kernel names them (symlinks resolved): an
        open's last guard compares the directory it really reached with these."""
        return tuple(sorted({os.path.realpath(p) for p in self.allowed_paths}))

    def describe(self):
        if self.missing or self.path is None:
            return 'the defaults (no %s)' % (self.path or DEFAULT_FILE)
        return self.path


def load_policy(path):
    """The node policy at `path`; the defaults when there is no such file.

    The file must belong to root (or, for a daemon that is not root, to its own
    user: it cannot give more than that user has) and be writable by its owner
    only: whoever can write it decides what root does. Any problem is a
    ConfigError naming the file.
    """
    try:
        data, info = read_file(path)
    except ConfigError:
        if not os.path.lexists(path):
            return NodePolicy(path=path, missing=True)
        raise
    if info.st_uid not in (0, os.geteuid()):
        raise ConfigError(['%s: refused: the node policy must belong to root (owner uid %d)'
                           % (path, info.st_uid)])
    if info.st_mode & 0o022:
        raise ConfigError(['%s: refused: the node policy is group- or world-writable (mode '
                           '%04o)' % (path, stat.S_IMODE(info.st_mode))])
    return with_file(path, lambda: parse_policy(decode(data), path))


def parse_policy(doc, path=None):
    problems = Problems()
    fields = check_object(doc, POLICY_KEYS, '', problems, ignore_underscore=True)
    if problems:
        raise ConfigError(problems.messages)
    return NodePolicy(path=path, **fields)


class PolicyInForce:
    """The node policy a daemon holds: read at start (a bad one stops the daemon,
    exit 78) and again on HUP (a bad one is logged and the old one stays)."""

    def __init__(self, path=None):
        self.path = path or DEFAULT_FILE      # --policy
        self.policy = None

    def load(self):
        if self.policy is None:
            self.policy = load_policy(self.path)
        return self.policy

    def reload(self, log):
        try:
            self.policy = load_policy(self.path)
        except ConfigError as err:
            for message in err.messages:
                log.error('%s', message)
            log.error('the node policy in force stays (%s)', self.policy.describe())


# ------------------------------------------------------------------ the check

class Accounts:
    """The user and group database, as the check asks it (tests give their own)."""

    @staticmethod
    def groups_of(user):
        """The names of `user`'s primary and supplementary groups; () if unknown."""
        try:
            entry = pwd.getpwnam(user)
        except KeyError:
            return ()
        names = []
        for gid in os.getgrouplist(user, entry.pw_gid):
            try:
                names.append(grp.getgrgid(gid).gr_name)
            except KeyError:
                pass
        return tuple(names)

    @staticmethod
    def is_superuser(user):
        """True if `user` has uid 0, whatever its name (a "toor" is root too)."""
        return _has_id_0(pwd.getpwnam, user)

    @staticmethod
    def is_supergroup(group):
        """True if `group` has gid 0, whatever its name."""
        return _has_id_0(grp.getgrnam, group)

    resolve = staticmethod(os.path.realpath)


def _has_id_0(lookup, name):
    try:
        return lookup(name)[2] == 0         # pw_uid, gr_gid: the third field of both
    except KeyError:
        return False


def check_entries(entries, policy, default_user, own_files=(), accounts=Accounts,
                  path='procs'):
    """Every way `entries` (a schema-valid PROCESS list) breaks `policy`, as
    "PATH: PROBLEM" lines. `own_files`: paths the daemons use themselves."""
    problems = Problems()
    taken = _both_ways(own_files, accounts)
    pid_files = {}
    for index, entry in enumerate(entries):
        for form in _both_ways([entry.get('pid_file')] if entry.get('pid_file') else [],
                               accounts):
            pid_files.setdefault(form, index)
    for index, entry in enumerate(entries):
        if problems.over:
            break
        label = process_label('%s[%d]' % (path, index), entry)
        _check_accounts(entry, label, policy, default_user, accounts, problems)
        for key in PROCESS_PATH_KEYS:
            value = entry.get(key)
            if value is None or (key == 'chroot' and value == '/'):
                continue
            where = '%s.%s' % (label, key)
            if not _check_path(value, where, policy, accounts, problems):
                continue
            forms = _both_ways([value], accounts)
            if any(is_below(form, taken) for form in forms):
                problems.add(where, '%s is a file the daemons use themselves' % value)
            other = next((pid_files[f] for f in forms if f in pid_files), None)
            if key == 'logs' and other is not None:
                problems.add(where, '%s is the pid_file of procs[%d]' % (value, other))
    return problems.messages


def _both_ways(paths, accounts):
    """Each path as written and as resolved: a link inside the allowed paths must
    not lead to a file that the path as written would not name."""
    forms = set()
    for path in paths:
        written = os.path.normpath(path)
        forms.update((written, accounts.resolve(written)))
    return forms


def check_document(doc, policy, default_user, own_files=(), accounts=Accounts):
    """A whole worker file: its processes, then its own top-level paths (whether one
    of those is another file the daemon uses is the loader's check, `clashes`, made
    for every file, root's too)."""
    messages = check_entries(doc.get('procs') or [], policy, default_user, own_files,
                             accounts)
    problems = Problems()
    for key in DAEMON_PATH_KEYS:
        if doc.get(key) is not None:
            _check_path(doc[key], key, policy, accounts, problems)
    return messages + problems.messages


class OwnFile(Record):
    """A file a daemon uses itself, as `clashes` names it."""
    key: str                # the top-level key it comes from ('' for the file itself)
    what: str               # "the worker's journal"
    path: str
    directory: bool = False
    derived: bool = False   # made from `key`'s value (CONFIG.journal), not the value


def clashes(files, accounts=Accounts):
    """Every two of `files` (OwnFiles) that are one file, as written or resolved, or
    one inside the other's directory: "KEY: PROBLEM" lines (SPEC 5.1, "never a file
    the daemons use themselves", holds for the daemon's own keys too: a
    `metrics_file` renamed over the lock frees it for a second daemon)."""
    problems = Problems()
    forms = [_both_ways([f.path], accounts) for f in files]
    for later in range(len(files)):
        for earlier in range(later):
            a, b = files[earlier], files[later]
            if a.key == b.key:
                continue                    # made from one value: never one file
            if forms[earlier] & forms[later]:
                _add_clash(problems, b, a, '')
            elif _inside(forms[later], forms[earlier], a):
                _add_clash(problems, b, a, 'inside ')
            elif _inside(forms[earlier], forms[later], b):
                _add_clash(problems, a, b, 'inside ')
    return problems.messages


def _inside(inner_forms, outer_forms, outer):
    return outer.directory and any(is_below(form, outer_forms) for form in inner_forms)


def _add_clash(problems, reported, other, relation):
    """Said at a key whose own value clashes, rather than at one of the files it
    makes (the journal) or at the worker file."""
    if not reported.key or (reported.derived and other.key and not other.derived):
        reported, other = other, reported
        relation = 'holding ' if relation else ''
    if reported.derived:
        problems.add(reported.key, '%s would be %s, %s%s' % (reported.what, reported.path,
                                                             relation, other.what))
    else:
        problems.add(reported.key, '%s is %s%s' % (reported.path, relation, other.what))


def _check_accounts(entry, label, policy, default_user, accounts, problems):
    """Users and groups by name, and by id: an account of uid or gid 0 under another
    name is root, and needs root allowed as root does."""
    user = entry.get('user', default_user)
    root_allowed = policy.allows_user('root')
    if not policy.allows_user(user):
        problems.add(label + '.user', '%s is not allowed by the node policy\'s allowed_users'
                     % jsonfile.quote(user))
    elif not root_allowed and user != 'root' and accounts.is_superuser(user):
        problems.add(label + '.user', '%s has uid 0: it is root, which needs root in the node '
                     'policy\'s allowed_users' % jsonfile.quote(user))
    group = entry.get('group')
    if group is None:
        return
    if not root_allowed and (group == 'root' or accounts.is_supergroup(group)):
        problems.add(label + '.group', '%s has gid 0: it needs root in the node policy\'s '
                     'allowed_users' % jsonfile.quote(group) if group != 'root' else
                     '"root" needs root in the node policy\'s allowed_users')
    elif not policy.allows_group(group, accounts.groups_of(user)):
        problems.add(label + '.group', '%s is not a group of %s and not in the node policy\'s '
                     'allowed_groups' % (jsonfile.quote(group), jsonfile.quote(user)))


def _check_path(value, where, policy, accounts, problems):
    """True if `value` is a path the policy allows (problems say why not)."""
    if '..' in value.split('/'):
        problems.add(where, '%s has a ".." component (refused by the node policy)' % value)
        return False
    written = os.path.normpath(value)
    if not is_below(written, policy.allowed_paths):
        problems.add(where, '%s is outside the node policy\'s allowed_paths' % value)
        return False
    real = accounts.resolve(written)
    if not is_below(real, policy.confine):
        problems.add(where, '%s leads outside the node policy\'s allowed_paths (to %s, by a '
                     'symbolic link)' % (value, real))
        return False
    return True

