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

Given the list's canonical text (jsonfile.dumps: sorted keys, no spaces, ASCII
only), one regular expression reads every value at once: a third of the time of
the walk of every value, which stays for the lists it does not recognize.
"""
import re

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


def _plain_list_pattern():
    """A plain list in canonical text. Its strings hold no backslash: no escape,
    so no character that JSON escapes (non-ASCII, control characters, NUL, a quote),
    and a string's text is its value. Keys come sorted, each at most once; the
    comma before a key is optional only because the text is JSON already."""
    text = r'"[^"\\]*"'
    path = r'"/[^"\\]*"'
    boolean = r'(?:true|false)'
    account = '"%s"' % USER_PATTERN.pattern.removesuffix('\\Z')
    values = {
        'args': r'\[(?:%s(?:,%s){0,4095})?\]' % (text, text),       # plain_strings
        'chroot': path, 'cwd': text, 'daemon': boolean,
        'env': r'\{(?:%s:%s(?:,%s:%s)*)?\}' % ((r'"[^"\\=]{1,256}"', text) * 2),  # plain_env
        'group': account, 'logs': path, 'name': '"%s"' % NAME_PATTERN.pattern.removesuffix('\\Z'),
        'notify': boolean, 'pid_file': path, 'restart': boolean, 'run': path, 'user': account,
        'write_pid': boolean,
    }
    required = ('name', 'run')
    entry = r'\{%s\}' % ''.join('(?:,?"%s":%s)%s' % (key, values[key], '' if key in required
                                                      else '?') for key in sorted(values))
    return re.compile(r'\[(?:%s(?:,%s)*)?\]' % (entry, entry))


PLAIN_LIST = _plain_list_pattern()


def plainly_valid(entries, text=None):
    """True when every entry of the list `entries` is plain and valid, and their
    names and pid files unique; False when the full checks must look. `text`:
    the list's canonical text, if the caller has it."""
    if text is not None and PLAIN_LIST.fullmatch(text):
        return _consistent(entries)
    return _plain_values(entries) and _consistent(entries)


def _plain_values(entries):
    if type(entries) is not list:
        return False
    for entry in entries:
        if type(entry) is not dict or 'name' not in entry or 'run' not in entry:
            return False
        for key, value in entry.items():
            check = PLAIN.get(key)
            if check is None or not check(value):
                return False
    return True


def _consistent(entries):
    """Of plain entries: names unique, pid files unique, and a daemon's pid file
    written by the daemon itself."""
    names, pid_files = set(), []
    for entry in entries:
        if entry.get('daemon') and ('pid_file' not in entry or entry.get('write_pid', True)):
            return False
        names.add(entry['name'])
        if 'pid_file' in entry:     # compared as procspec compares them: normalized
            pid_files.append(absolute_path(entry['pid_file']))
    return len(names) == len(entries) and len(set(pid_files)) == len(pid_files)
