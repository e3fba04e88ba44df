"""The executor's side of cgroups: which tree each process has, and what is done to it.

Without cgroups (a worker that is not root, a host without a writable v2
hierarchy) a process has no tree: its process group is the only fence, and
a limit that needs a cgroup makes it `failed` (never silently unlimited).
"""
import os
import signal
import time
from contextlib import nullcontext

from .cgroups import describe_missing


KILL_WAIT = 0.2          # a removed tree's leftovers, KILLed, are waited for this long


class NoTree(Exception):
    """A limit this host cannot enforce: the process cannot start."""


class Trees:
    def __init__(self, cgroups):
        self.cgroups = cgroups            # a cgroups.Cgroups, or None
        self.by_name = {}
        self.leftovers = {}               # name -> a removed process's tree, not empty yet

    def check(self, spec):
        """NoTree if a cgroup limit of `spec` cannot be enforced here."""
        limits = spec.limits.cgroup if spec.limits else {}
        if limits and self.cgroups is None:
            raise NoTree('cannot enforce %s: the worker has no cgroups (it must be root, on '
                         'a host with a writable cgroup v2 hierarchy)'
                         % describe_missing(sorted(limits), spec.limits))
        missing = self.cgroups.missing(spec.limits) if self.cgroups else []
        if missing:
            raise NoTree('cannot enforce %s: no such controller on this host'
                         % describe_missing(missing, spec.limits))

    def born_in(self, spec):
        """A context for the fork: the child is born in its own fresh tree."""
        if self.cgroups is None:
            return nullcontext()
        tree = self.cgroups.tree(spec.name, spec.limits)
        self.leftovers.pop(spec.name, None)
        self.cgroups.prepare(tree)
        self.by_name[spec.name] = tree
        return self.cgroups.joined(tree)

    def apply(self, spec):
        tree = self.by_name.get(spec.name)
        if tree is not None:
            self.cgroups.apply(tree, spec.limits)

    def _tree(self, name):
        """The tree of `name`; one a previous worker made is found by its name too."""
        if self.cgroups is None:
            return None
        return self.by_name.get(name) or self.cgroups.tree(name)

    def events_file(self, name):
        tree = self._tree(name)
        return self.cgroups.events_file(tree) if tree else None

    def populated(self, name):
        tree = self._tree(name)
        return tree is not None and self.cgroups.populated(tree)

    def signal(self, name, signum):
        """`signum` to every member of the tree; False if there is no tree."""
        tree = self._tree(name)
        return tree is not None and self.signal_tree(tree, signum)

    def signal_tree(self, tree, signum):
        try:
            self.cgroups.signal(tree, signum)
        except OSError:
            return False
        return True

    def close(self):
        """Every process stopped: the cgroups go too."""
        if self.cgroups is not None:
            self.cgroups.close()

    def remove(self, name):
        """A process removed for good: what its tree still holds (a grandchild of a
        process that ended) is killed, and the tree goes once empty."""
        tree = self.by_name.pop(name, None) or self._tree(name)
        if tree is None:
            return
        if self.cgroups.populated(tree):
            self.signal_tree(tree, signal.SIGKILL)
            deadline = time.monotonic() + KILL_WAIT
            while self.cgroups.populated(tree) and time.monotonic() < deadline:
                time.sleep(0.005)                 # KILL takes a moment (milliseconds)
            if self.cgroups.populated(tree):
                self.leftovers[name] = tree       # removed with the next usage sample
        self.cgroups.remove(tree)

    def remove_leftovers(self):
        """Removed trees that were still busy: gone now, if empty."""
        for name, tree in list(self.leftovers.items()):
            if not self.cgroups.populated(tree):
                self.cgroups.remove(tree)
                del self.leftovers[name]

    def usage(self, name, pid):
        """(memory bytes, CPU seconds) of the tree; of the pid alone without one."""
        tree = self.by_name.get(name)
        if tree is not None:
            return self.cgroups.usage(tree)
        return _proc_usage(pid)

    def oom_kills(self, name):
        tree = self.by_name.get(name)
        return self.cgroups.oom_kills(tree) if tree else None

    def record(self, name):
        """The tree's path for the state file, to check at adoption."""
        tree = self.by_name.get(name)
        return tree.relative if tree else None

    def adopt(self, name, relative, pid, limits):
        """True if `pid` is in the tree the record names (or neither has one)."""
        if self.cgroups is None or relative is None:
            return relative is None
        tree = self.cgroups.tree(name, limits)
        if tree.relative != relative or not self.cgroups.contains(tree, pid):
            return False
        self.by_name[name] = tree
        return True


def _proc_usage(pid):
    """RSS and utime+stime of one process from /proc (no tree to sum)."""
    if not pid:
        return None, None
    try:
        with open('/proc/%d/stat' % pid, 'rb') as f:
            fields = f.read().rsplit(b')', 1)[1].split()
        with open('/proc/%d/statm' % pid) as f:
            rss = int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')
    except (OSError, ValueError, IndexError):
        return None, None
    ticks = int(fields[11]) + int(fields[12])
    return rss, ticks / os.sysconf('SC_CLK_TCK')

