"""PROCESS key `limits` (SPEC 6.2): rlimits, and the cgroup limits of a whole tree.

Pure: JSON in, a frozen `Limits` out (or Invalid with the problem). What a
limit becomes on a given host (rlimits, cgroup v2 or v1 files) is the
worker's business (worker/cgroups.py, worker/spawn.py).
"""
import re

from . import jsonfile
from .record import Record
from .schema import Invalid, Key, json_type, nested

RLIMITS = ('nofile', 'nproc', 'core', 'fsize', 'memlock', 'stack', 'as', 'cpu')
CGROUP_LIMITS = ('memory_max', 'memory_high', 'cpu_max', 'cpu_weight', 'pids_max')
UNLIMITED = 'unlimited'
SUFFIXES = {'K': 1 << 10, 'M': 1 << 20, 'G': 1 << 30, 'T': 1 << 40}
_SIZE = re.compile(r'([0-9]{1,19})([KMGT])\Z')
MAX_INT = 2 ** 63 - 1


def _whole(value, low, high):
    if type(value) is not int:
        raise Invalid('must be an integer, not %s' % json_type(value))
    if not low <= value <= high:
        raise Invalid('must be between %d and %d, not %d' % (low, high, value))
    return value


def rlimit(value):
    """An rlimit: an integer (bytes, or seconds for `cpu`), or "unlimited"."""
    if value == UNLIMITED:
        return UNLIMITED
    if isinstance(value, str):
        raise Invalid('must be an integer or "unlimited", not %s' % jsonfile.quote(value))
    return _whole(value, 0, MAX_INT)


def size(value):
    """Bytes: an integer, or digits with one binary suffix: "512M", "2G"."""
    if isinstance(value, str):
        match = _SIZE.match(value)
        if not match:
            raise Invalid('must be a number of bytes or a size such as "512M" or "2G" (K, M, '
                          'G, T), not %s' % jsonfile.quote(value))
        value = int(match.group(1)) * SUFFIXES[match.group(2)]
        if value > MAX_INT:
            raise Invalid('is too large')
        return value
    return _whole(value, 0, MAX_INT)


def _cpus(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Invalid('must be a number of CPUs such as 0.5, not %s' % json_type(value))
    if not 0.001 <= value <= 4096:
        raise Invalid('must be between 0.001 and 4096 CPUs, not %s' % value)
    return float(value)


LIMIT_KEYS = tuple(Key(name, 'integer or `"unlimited"`', None,
                       'rlimit (soft = hard), %s' % ('seconds' if name == 'cpu' else
                                                     'a count' if name in ('nofile', 'nproc')
                                                     else 'bytes'), rlimit)
                   for name in RLIMITS) + (
    Key('memory_max', 'size', None, 'hard memory limit of the whole tree (the OOM killer acts '
        'beyond it); not swap', size),
    Key('memory_high', 'size', None, 'the tree is throttled and reclaimed above this', size),
    Key('cpu_max', 'number', None, 'CPUs the tree may use, e.g. `0.5`', _cpus),
    Key('cpu_weight', 'integer 1-10000', None, 'relative CPU share (100 = normal)',
        lambda value: _whole(value, 1, 10000)),
    Key('pids_max', 'integer', None, 'tasks the tree may hold',
        lambda value: _whole(value, 1, 4194304)),
)


class Limits(Record):
    rlimits: tuple = ()        # (name, value) pairs, value an int or "unlimited"
    memory_max: int = None
    memory_high: int = None
    cpu_max: float = None
    cpu_weight: int = None
    pids_max: int = None

    @property
    def cgroup(self):
        """{name: value} of the cgroup limits that are set."""
        return {name: getattr(self, name) for name in CGROUP_LIMITS
                if getattr(self, name) is not None}

    @property
    def record(self):
        """As JSON for records (state file, adoption): only what is set."""
        return dict(self.rlimits, **self.cgroup)


def _build(fields):
    rlimits = tuple((name, fields[name]) for name in RLIMITS if fields[name] is not None)
    return Limits(rlimits=rlimits, **{name: fields[name] for name in CGROUP_LIMITS})


limits = nested(LIMIT_KEYS, _build)      # the checker of PROCESS key `limits`


def describe(name, value):
    """A limit as people write it: 512M for bytes, 0.5 for CPUs."""
    if name in ('memory_max', 'memory_high') and isinstance(value, int):
        for suffix in 'TGMK':
            if value and value % SUFFIXES[suffix] == 0:
                return '%d%s' % (value // SUFFIXES[suffix], suffix)
    return str(value)
