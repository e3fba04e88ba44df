"""The small toolkit every config check is written with.

A `Key` describes one JSON key: its type, default and rule, in words (for the
README's reference tables) and as a checker (for validation). Checkers raise
`Invalid(problem)`; `check_object` turns that into a message that names the
JSON path, collects every problem of a document, and adds a "did you mean"
hint to unknown keys.
"""
import difflib
import os

from .jsonfile import quote
from .record import Record

REQUIRED = object()


class Invalid(ValueError):
    """One problem with one value; the caller knows where the value is."""


class InvalidObject(Invalid):
    """A nested object's problems: (subpath, problem) pairs below the value's path."""

    def __init__(self, pairs):
        super().__init__('; '.join('%s: %s' % pair if pair[0] else pair[1] for pair in pairs))
        self.pairs = pairs


class Problems:
    """The problems found in one document, each as "PATH: PROBLEM": the first LIMIT
    of them. A file or a list of a million bad entries is refused with a hundred
    reasons and a line saying there are more, not with a million lines (each one
    logged, and kept in the state file); the walks that add them stop once `over`."""
    LIMIT = 100

    def __init__(self, limit=LIMIT):
        self.limit = limit
        self.found = 0                  # every problem added, listed or not
        self._listed = []

    def add(self, path, problem):
        self.found += 1
        if self.found <= self.limit:
            self._listed.append('%s: %s' % (path, problem) if path else problem)

    @property
    def over(self):
        """More problems than are listed: there is no need to look for others."""
        return self.found > self.limit

    @property
    def messages(self):
        more = ['more problems than these %d; the rest are not listed' % self.limit]
        return self._listed + (more if self.over else [])

    def __bool__(self):
        return self.found > 0


class Key(Record):
    name: str
    kind: str          # the type, as the README says it
    default: object    # REQUIRED, a value, or None for "none"
    rule: str          # the rule, as the README says it
    check: object      # check(value) -> normalized value; raises Invalid
    default_text: str = None  # the README's default, when the value says too little


def json_type(value):
    if value is None:
        return 'null'
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, (int, float)):
        return 'a number'
    if isinstance(value, str):
        return 'a string'
    if isinstance(value, list):
        return 'a list'
    return 'an object'


def string(value):
    if not isinstance(value, str):
        raise Invalid('must be a string, not %s' % json_type(value))
    if '\0' in value:
        raise Invalid('must not contain a NUL character')
    if not value.isascii():     # ASCII is valid Unicode: most strings end here
        try:
            value.encode('utf-8')
        except UnicodeEncodeError:
            raise Invalid('is not valid Unicode (a lone surrogate?)') from None
    return value


def boolean(value):
    if type(value) is not bool:  # isinstance(True, int) is true; 1 is not true here
        raise Invalid('must be true or false, not %s' % json_type(value))
    return value


def integer(low, high):
    def check(value):
        if type(value) is not int or not low <= value <= high:
            raise Invalid('must be an integer from %d to %d, not %s' % (low, high, _brief(value)))
        return value
    return check


def number(low, high):
    def check(value):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise Invalid('must be a number, not %s' % json_type(value))
        if not low <= value <= high:
            raise Invalid('must be between %s and %s, not %s' % (low, high, _brief(value)))
        return float(value)
    return check


def _brief(value):
    """A number as the user wrote it, cut short: %g would round 86400.0000001 to
    86400 and overflow on a 400-digit integer."""
    text = repr(value)
    return text if len(text) <= 24 else '%s... (%d digits)' % (text[:12], len(text))


def absolute_path(value):
    value = string(value)
    if not value.startswith('/'):
        raise Invalid('must be an absolute path (starting with "/"), not %s' % quote(value))
    return os.path.normpath(value) if value != '/' else value


def list_of(check_item, max_items=10000):
    def check(value):
        if not isinstance(value, list):
            raise Invalid('must be a list, not %s' % json_type(value))
        if len(value) > max_items:
            raise Invalid('has %d items, more than the limit of %d' % (len(value), max_items))
        out = []
        for index, item in enumerate(value):
            try:
                out.append(check_item(item))
            except Invalid as err:
                raise Invalid('item %d %s' % (index, err)) from None
        return tuple(out)
    return check


def check_object(value, keys, path, problems, ignore_underscore=False):
    """Validate a JSON object against `keys`; return {name: normalized value}.

    Missing required keys, unknown keys and bad values each add a problem; a
    key whose value is bad is left out of the result.
    """
    if not isinstance(value, dict):
        problems.add(path, 'must be an object, not %s' % json_type(value))
        return None
    known, required, defaults = _described(keys)
    out, bad = dict(defaults), None
    for name, item in value.items():
        if problems.over:
            break
        key = known.get(name)
        if key is None:
            if not (ignore_underscore and name.startswith('_')):
                problems.add(path, 'unknown key %s%s' % (quote(name), _hint(name, known)))
            continue
        try:
            out[name] = key.check(item)
            continue
        except InvalidObject as err:
            for subpath, problem in err.pairs:
                problems.add(_join(_join(path, name), subpath), problem)
        except Invalid as err:
            problems.add(_join(path, name), str(err))
        bad = (bad or []) + [name]
    for name in required:
        if name not in value:
            problems.add(path, 'missing required key %s' % quote(name))
    for name in bad or ():      # a bad value is left out, not replaced by the default
        out.pop(name, None)
    return out


_DESCRIBED = {}     # id(keys) -> what check_object needs of them, made once


def _described(keys):
    """({name: Key}, required names, {name: default}) of a key tuple (a module's
    constant: a thousand node lists check their four thousand processes with it)."""
    described = _DESCRIBED.get(id(keys))
    if described is None or described[0] is not keys:
        known = {key.name: key for key in keys}
        described = (keys, known, tuple(k.name for k in keys if k.default is REQUIRED),
                     {k.name: k.default for k in keys if k.default is not REQUIRED})
        _DESCRIBED[id(keys)] = described
    return described[1:]


def nested(keys, build):
    """A checker for an object value: every problem reported at its own path
    (`procs[0] ("x").limits.memory_max: ...`), else build(fields)."""
    def check(value):
        problems = PathProblems()
        fields = check_object(value, keys, '', problems)
        if problems:
            raise InvalidObject(problems.pairs)
        return build(fields)
    return check


class PathProblems(Problems):
    """Problems that also keep each (subpath, problem) pair, for nested objects."""
    def __init__(self):
        super().__init__()
        self.pairs = []

    def add(self, path, problem):
        super().add(path, problem)
        if len(self.pairs) <= self.limit:       # one past it: the parent is over too
            self.pairs.append((path, problem))


def _join(path, name):
    if not name:
        return path
    return '%s.%s' % (path, name) if path else name


def _hint(name, known):
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return ' (did you mean %s?)' % quote(close[0]) if close else ''


def reference_table(keys):
    """The README's markdown table for `keys`: key, type, default, rule."""
    rows = ['| key | type | default | rule |', '|---|---|---|---|']
    for key in keys:
        if key.default_text is not None:
            default = key.default_text
        elif key.default is REQUIRED:
            default = 'required'
        elif key.default is None:
            default = 'none'
        else:
            default = '`%s`' % _doc_value(key.default)
        rows.append('| `%s` | %s | %s | %s |' % (key.name, key.kind, default, key.rule))
    return '\n'.join(rows)


def _doc_value(value):
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, tuple):
        return '[]' if not value else list(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return quote(value) if isinstance(value, str) else value
