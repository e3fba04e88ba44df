"""A quick look at a process list that the PROCESS checks would certainly pass.

The master checks every node's list with the worker's rules (procspec.py), and
an edit of a thousand nodes' lists is four thousand entries: the rules' full
walk (a Key, a normalized value and a ProcessSpec for each) was the largest
part of the master's CPU for such an edit. Most lists use plain keys with plain
values: ASCII names, absolute paths, booleans. This recognizes those with a
test or two per value, done in C, and says either "certainly valid" or "look
closer"; the full checks then find and name every problem. It never has the
last word on a bad list: tests/unit/test_plaincheck.py holds it to that (no list
it passes is refused by procspec).
"""
from .procspec import NAME_PATTERN, USER_PATTERN, plain_env, plain_strings
from .schema import absolute_path


def _ascii_text(value):
    return type(value) is str and value.isascii() and '\0' not in value


def _absolute(value):
    return _ascii_text(value) and value[:1] == '/'


def _bool(value):
    return type(value) is bool


def _matches(pattern):
    return lambda value: type(value) is str and pattern.match(value) is not None


# key -> a test that its value is valid (False: maybe not). Keys not here (umask,
# stop_signal, depends, watchdog, health, limits) send the list to the full checks.
PLAIN = {
    'name': _matches(NAME_PATTERN), 'run': _absolute, 'args': plain_strings,
    'user': _matches(USER_PATTERN), 'group': _matches(USER_PATTERN),
    'env': lambda value: type(value) is dict and plain_env(value),
    'chroot': _absolute, 'cwd': _ascii_text, 'pid_file': _absolute, 'logs': _absolute,
    'write_pid': _bool, 'daemon': _bool, 'restart': _bool, 'notify': _bool,
    'stop_timeout': lambda value: type(value) in (int, float) and 0 <= value <= 86400,
}


def plainly_valid(entries):
    """True when every entry of the list `entries` is plain and valid, and their
    names and pid files unique; False when the full checks must look."""
    if type(entries) is not list:
        return False
    names, pid_files = set(), []
    for entry in entries:
        if type(entry) is not dict or 'name' not in entry or 'run' not in entry:
            return False
        for key, value in entry.items():
            check = PLAIN.get(key)
            if check is None or not check(value):
                return False
        if entry.get('daemon') and ('pid_file' not in entry or entry.get('write_pid', True)):
            return False
        names.add(entry['name'])
        if 'pid_file' in entry:     # compared as procspec compares them: normalized
            pid_files.append(absolute_path(entry['pid_file']))
    return len(names) == len(entries) and len(set(pid_files)) == len(pid_files)
