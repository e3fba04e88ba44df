"""A cgroup per process (SPEC 6.2): the whole tree of a process, fenced and measured.

A process group is a weak fence: a program that double-forks or calls setsid
leaves it. A cgroup is not left: every descendant stays a member, so a stop
can end them all and tell when they are gone, and the tree can be limited.

Where they live: the root worker's own subtree in every hierarchy it can
write, `INSTANCE/NAME.proc`, INSTANCE being `/diprocd/CONFIG` when the worker
runs in the root cgroup (an init script) and `OWN/CONFIG` below its own
cgroup otherwise (`Delegate=yes` under systemd). Two layouts:

- cgroup v2 alone (Debian 11+): membership, kill, the "populated" event and
  the controllers (memory, cpu, pids) in one hierarchy. A v2 cgroup that
  hands controllers to its children holds no process itself, so the worker
  moves to `OWN/supervisor` first.
- hybrid: membership, kill and events in the v2 `unified` hierarchy, and each
  limit in the v1 hierarchy of its controller (memory, cpu, pids), only for
  processes whose limits need it.

The child is in its cgroups before it can fork: for the moment of the spawn
the worker itself sits in them (v2: the worker process; v1: the spawning
thread), so the child is born there. Limits are written right after, so no
allocation of the worker's is ever charged against a process's limit.
"""
import errno
import os
import re
import signal
import threading
import time
from contextlib import contextmanager

from .. import limitspec
from . import cgroupfs as fs

NEEDS = {'memory_max': 'memory', 'memory_high': 'memory', 'cpu_max': 'cpu',
         'cpu_weight': 'cpu', 'pids_max': 'pids'}
SUFFIX = '.proc'      # a process's cgroup: "web.proc" (never a control file's name)
CLOSE_WAIT = 2.0      # for killed leftovers to vanish before the worker removes its cgroups


class CgroupError(OSError):
    pass


class Hierarchy:
    """One mounted hierarchy: where it is, and where the worker is in it."""

    def __init__(self, mount, own, version, controllers):
        self.mount, self.own, self.version = mount, own, version
        self.controllers = frozenset(controllers)

    def path(self, relative):
        return self.mount + relative


class Tree:
    """One process's cgroup, in each hierarchy it needs: {hierarchy: directory}."""

    def __init__(self, name, dirs):
        self.name, self.dirs = name, dirs

    @property
    def relative(self):
        """Its path in the hierarchy of membership, as /proc/PID/cgroup shows it."""
        return self.dirs[0][1]


class Cgroups:
    def __init__(self, membership, v1, instance):
        self.membership = membership        # a v2 Hierarchy: unified, or the only one
        self.v1 = v1                        # controller -> v1 Hierarchy (hybrid)
        self.instance = instance
        self.home = {}                      # hierarchy -> where the worker itself sits
        self._made = set()                  # the paths of processes' cgroups that may exist
        self._lock = threading.Lock()

    # ------------------------------------------------------------ set-up

    @classmethod
    def detect(cls, config_path, mountinfo='/proc/self/mountinfo',
               own_cgroups='/proc/self/cgroup'):
        """The worker's cgroups, or None where there is no writable v2 hierarchy
        (a worker that is not root, an old host): processes then have none."""
        if os.geteuid() != 0:
            return None
        mounts, own = fs.mounts(mountinfo), fs.own_paths(own_cgroups)
        v2 = mounts.get('cgroup2')
        if v2 is None or '' not in own or not os.access(v2 + own[''], os.W_OK):
            return None
        controllers = fs.read(os.path.join(v2 + own[''], 'cgroup.controllers')).split()
        membership = Hierarchy(v2, own[''], 2, controllers)
        v1 = {c: Hierarchy(mounts[c], own[c], 1, (c,)) for c in fs.V1_CONTROLLERS
              if c in mounts and c in own and c not in controllers}
        return cls(membership, v1, fs.escape(os.path.realpath(config_path)))

    def start(self):
        """Make the worker's subtree; on v2 with controllers, move the worker out
        of the cgroups that hand controllers down (no process may live there)."""
        hierarchies = [self.membership] + list(self.v1.values())
        for hierarchy in hierarchies:
            self.home[hierarchy] = hierarchy.own
        wanted = [c for c in fs.V1_CONTROLLERS if c in self.membership.controllers]
        if wanted and self.membership.own != '/':
            leaf = fs.join(self.membership.own, 'supervisor')
            os.makedirs(self.membership.path(leaf), exist_ok=True)
            fs.write(self.membership.path(leaf), 'cgroup.procs', str(os.getpid()))
            self.home[self.membership] = leaf
        for hierarchy in hierarchies:
            base = self.base(hierarchy)
            os.makedirs(hierarchy.path(base), exist_ok=True)
            if hierarchy.version == 2 and wanted:
                self._delegate(hierarchy, base, wanted)
            self._made.update(os.path.join(hierarchy.path(base), name)
                              for name in fs.subdirs(hierarchy.path(base)))

    def base(self, hierarchy):
        """Where the processes' cgroups live in `hierarchy`."""
        own = hierarchy.own
        return fs.join('/diprocd' if own == '/' else own, self.instance)

    @staticmethod
    def _delegate(hierarchy, base, controllers):
        """Enable `controllers` from the worker's own cgroup down to `base`."""
        parts = [p for p in base[len(hierarchy.own.rstrip('/')):].split('/') if p]
        path = hierarchy.own
        for part in [None] + parts:
            if part is not None:
                path = fs.join(path, part)
            fs.write(hierarchy.path(path), 'cgroup.subtree_control',
                   ' '.join('+' + c for c in controllers))

    # ------------------------------------------------------------ what a limit needs

    def missing(self, limits):
        """The cgroup limits of `limits` this host cannot enforce, by name."""
        if limits is None:
            return []
        return [name for name in limits.cgroup
                if NEEDS[name] not in self.membership.controllers and NEEDS[name] not in self.v1]

    # ------------------------------------------------------------ one process's tree

    def tree(self, name, limits=None):
        """The cgroups of process `name` (not made yet): membership first."""
        dirs = [(self.membership, fs.join(self.base(self.membership), name + SUFFIX))]
        for controller in _v1_needed(limits, self.v1):
            hierarchy = self.v1[controller]
            dirs.append((hierarchy, fs.join(self.base(hierarchy), name + SUFFIX)))
        return Tree(name, dirs)

    def prepare(self, tree):
        """Fresh cgroups for a start: last run's (empty by now) are made anew, so no
        limit of an earlier definition is left when the worker steps in."""
        self.remove(tree)
        for hierarchy, relative in tree.dirs:
            path = hierarchy.path(relative)
            self._made.add(path)    # one made by hand meanwhile goes at the next try
            try:
                os.mkdir(path)
            except FileExistsError:
                raise CgroupError(errno.EBUSY, '%s still has processes' % path) from None

    @contextmanager
    def joined(self, tree):
        """Hold while the child is forked: it is born in `tree`."""
        with self._lock:
            moved = []
            try:
                for hierarchy, relative in tree.dirs:
                    _enter(hierarchy, hierarchy.path(relative))
                    moved.append(hierarchy)
                yield
            finally:
                for hierarchy in moved:
                    _enter(hierarchy, hierarchy.path(self.home[hierarchy]))

    def apply(self, tree, limits):
        for name, value in (limits.cgroup if limits else {}).items():
            hierarchy, directory = self._holding(tree, NEEDS[name])
            for filename, text in fs.limit_files(hierarchy.version, name, value):
                try:
                    fs.write(hierarchy.path(directory), filename, text)
                except OSError as err:      # the kernel refuses the value: say which
                    raise CgroupError(err.errno, 'limits.%s %s: writing %r to %s: %s' % (
                        name, limitspec.describe(name, value), text, filename,
                        err.strerror)) from None

    def _holding(self, tree, controller):
        for hierarchy, relative in tree.dirs:
            if controller in hierarchy.controllers:
                return hierarchy, relative
        raise CgroupError(errno.ENOENT, 'no %s controller for %s' % (controller, tree.name))

    def members(self, tree):
        """The pids of every live member of the tree."""
        text = _membership_file(tree, 'cgroup.procs')
        return [int(pid) for pid in text.split()] if text else []

    def populated(self, tree):
        return 'populated 1' in (_membership_file(tree, 'cgroup.events') or '')

    def events_file(self, tree):
        """The file whose changes say the tree emptied (inotify IN_MODIFY); None when
        the tree was never made (nothing to watch, nothing can be left in it)."""
        hierarchy, relative = tree.dirs[0]
        path = hierarchy.path(relative)
        return os.path.join(path, 'cgroup.events') if path in self._made else None

    def signal(self, tree, signum):
        """`signum` to every member; KILL through cgroup.kill where the kernel has it."""
        hierarchy, relative = tree.dirs[0]
        kill_file = os.path.join(hierarchy.path(relative), 'cgroup.kill')
        if signum == signal.SIGKILL and os.path.exists(kill_file):
            fs.write(hierarchy.path(relative), 'cgroup.kill', '1')
            return
        for pid in self.members(tree):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    def remove(self, tree):
        """The cgroups of the tree's name, gone from every hierarchy (an earlier
        definition may have had a v1 one this one has not); only empty ones go.
        Only where one may exist (made, or found at start): a start in the hybrid
        layout would otherwise try four rmdirs to find one."""
        for hierarchy in [self.membership] + list(self.v1.values()):
            path = hierarchy.path(fs.join(self.base(hierarchy), tree.name + SUFFIX))
            if path not in self._made:
                continue
            try:
                os.rmdir(path)
            except FileNotFoundError:
                pass
            except OSError:
                continue                    # busy: it stays, and may be removed later
            self._made.discard(path)

    def close(self):
        """The worker stops for good: what its processes left behind (a `restart:
        false` process's grandchild) is killed, then its subtree goes."""
        base = self.membership.path(self.base(self.membership))
        trees = [self.tree(name[:-len(SUFFIX)]) for name in fs.subdirs(base)
                 if name.endswith(SUFFIX)]
        for tree in trees:
            if self.populated(tree):
                try:
                    self.signal(tree, signal.SIGKILL)
                except OSError:
                    pass
        deadline = time.monotonic() + CLOSE_WAIT
        while any(map(self.populated, trees)) and time.monotonic() < deadline:
            time.sleep(0.01)                    # KILL is quick; the worker is exiting
        for hierarchy in [self.membership] + list(self.v1.values()):
            base = hierarchy.path(self.base(hierarchy))
            for name in fs.subdirs(base):
                fs.rmdir_quietly(os.path.join(base, name))
            for path in (base, os.path.dirname(base)):
                if os.path.basename(path) in (self.instance, 'diprocd'):
                    fs.rmdir_quietly(path)

    def contains(self, tree, pid):
        """True if `pid` is a member of the tree (adoption checks it)."""
        return fs.own_paths('/proc/%d/cgroup' % pid).get('') == tree.relative

    def usage(self, tree):
        """(memory bytes, CPU seconds) of the whole tree; None where unknown."""
        return self._memory(tree), self._cpu_seconds(tree)

    def _memory(self, tree):
        for hierarchy, relative in tree.dirs:
            name = 'memory.current' if hierarchy.version == 2 else 'memory.usage_in_bytes'
            if 'memory' in hierarchy.controllers:
                try:
                    return int(fs.read(os.path.join(hierarchy.path(relative), name)))
                except (OSError, ValueError):
                    return None
        return sum(filter(None, map(fs.rss, self.members(tree))))

    def _cpu_seconds(self, tree):
        stat = _membership_file(tree, 'cpu.stat', OSError)
        if stat is None:
            return None
        match = re.search(r'^usage_usec (\d+)', stat, re.M)
        return int(match.group(1)) / 1e6 if match else None

    def oom_kills(self, tree):
        """How many times the OOM killer acted in the tree; None without a memory limit."""
        for hierarchy, relative in tree.dirs:
            if 'memory' in hierarchy.controllers:
                name = 'memory.events' if hierarchy.version == 2 else 'memory.oom_control'
                try:
                    text = fs.read(os.path.join(hierarchy.path(relative), name))
                except OSError:
                    return None
                match = re.search(r'^oom_kill (\d+)', text, re.M)
                return int(match.group(1)) if match else None
        return None


# ------------------------------------------------------------------ helpers

def _membership_file(tree, name, unread=FileNotFoundError):
    """A file of the tree's cgroup in the membership hierarchy; None if it is gone
    (or raises `unread`)."""
    hierarchy, relative = tree.dirs[0]
    try:
        return fs.read(os.path.join(hierarchy.path(relative), name))
    except unread:
        return None


def _v1_needed(limits, v1):
    return sorted({NEEDS[name] for name in (limits.cgroup if limits else {})
                   if NEEDS[name] in v1})


def _enter(hierarchy, path):
    """Move the worker (v2) or the calling thread (v1) into the cgroup at `path`."""
    if hierarchy.version == 2:
        fs.write(path, 'cgroup.procs', str(os.getpid()))
    else:
        fs.write(path, 'tasks', str(threading.get_native_id()))


def describe_missing(names, limits):
    """Why a process cannot start: the limits this host cannot enforce."""
    return ', '.join('%s %s' % (n, limitspec.describe(n, getattr(limits, n))) for n in names)
