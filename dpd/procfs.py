"""What /proc and a few Linux calls say about processes.

A pid alone proves nothing (pids are reused), so a process is identified by
its pid and its `identity`: (start time, session). The start time (field 22
of /proc/PID/stat, in clock ticks since boot) has a 10 ms grain, so a pid
reused within the same tick would pass on it alone; the session id (field 6)
closes that gap: our children lead their own session and can never leave it,
and a session's id stays taken while any of its members lives. The boot's id
is kept beside, since start times restart at every boot.
"""
import ctypes
import functools
import os
import time

PR_SET_CHILD_SUBREAPER = 36


@functools.lru_cache(maxsize=1)
def boot_id():
    """This boot's id (constant while we run; read once)."""
    try:
        with open('/proc/sys/kernel/random/boot_id') as f:
            return f.read().strip()
    except OSError:
        return ''


def identity(pid):
    """(start ticks, session id) of `pid`, or None if it is gone."""
    try:
        with open('/proc/%d/stat' % pid, 'rb') as f:
            data = f.read()
    except (OSError, ValueError):
        return None
    # the command name (field 2) may hold spaces and ')'; fields resume after the last ')'
    fields = data[data.rfind(b')') + 2:].split()
    if len(fields) < 20 or fields[0] == b'Z':
        return None  # a zombie has ended; only its exit status is left
    return int(fields[19]), int(fields[3])


class BirthClock:
    """identity() of a child just started in its own session, without waiting for
    its exec: a read of /proc/PID/stat blocks until the exec is done (0.3-0.6 ms
    here), which would keep the worker from preparing the next start meanwhile.

    The child leads its own session (the spawn's setsid: session id = pid), and
    its start time is the CLOCK_BOOTTIME of its fork in clock ticks, which lies
    between two readings taken around the spawn: exact when both fall in the
    same tick (most spawns; otherwise /proc is read). The arithmetic is checked
    against /proc on the first child; if the kernel ever disagrees, /proc it is.
    """

    def __init__(self):
        self.trusted = None               # unknown until a child is compared

    @staticmethod
    def now():
        return time.clock_gettime_ns(time.CLOCK_BOOTTIME)

    def identity(self, pid, forked_after, forked_before):
        """The identity of `pid`, a session leader forked between two readings of
        now(): `forked_after` (before the spawn) and `forked_before` (after it)."""
        tick = _tick(forked_after)
        if tick != _tick(forked_before) or not self.trusted:
            known = identity(pid)
            if tick == _tick(forked_before) and self.trusted is None and known is not None:
                self.trusted = known == (tick, pid)
            return known
        return tick, pid


def _tick(boottime_ns):
    return boottime_ns * os.sysconf('SC_CLK_TCK') // 1_000_000_000


def is_alive(pid, known):
    """True if `pid` still is the process whose identity was `known`."""
    return type(pid) is int and pid > 1 and known is not None and \
        identity(pid) == tuple(known)


def ancestors(pid, limit=64):
    """The parent of `pid`, its parent... up to init (pid 1 excluded); [] if gone."""
    chain = []
    while len(chain) < limit:
        parent = _parent(pid)
        if parent is None or parent <= 1:
            break
        chain.append(parent)
        pid = parent
    return chain


def _parent(pid):
    try:
        with open('/proc/%d/stat' % pid, 'rb') as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rfind(b')') + 2:].split()
    return int(fields[1]) if len(fields) > 1 else None


def runs(pid, program, uid):
    """True if `pid` is alive, runs with effective uid `uid` and has `program` in
    its command line (a daemon started as `python3 .../dpd-workerd` too)."""
    try:
        with open('/proc/%d/status' % pid, 'rb') as f:
            status = f.read()
        with open('/proc/%d/cmdline' % pid, 'rb') as f:
            cmdline = f.read()
    except OSError:
        return False
    uids = next((line.split()[1:] for line in status.splitlines()
                 if line.startswith(b'Uid:')), [])
    return len(uids) > 1 and int(uids[1]) == uid and program.encode() in cmdline


def cgroup_of(pid):
    """The v2 cgroup of `pid` (the "0::" line of /proc/PID/cgroup), or None."""
    try:
        with open('/proc/%d/cgroup' % pid) as f:
            for line in f:
                if line.startswith('0::'):
                    return line[3:].rstrip('\n')
    except OSError:
        pass
    return None


def set_child_subreaper():
    """Orphaned descendants (daemons' double forks) become our children."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def group_alive(pgid):
    """True while a live (not zombie) process is left in process group `pgid`.

    A zombie stays in its group until its parent reaps it; an adopted process's
    parent is not us, so its zombie may linger. killpg answers the common case
    in one call; /proc is read only when it says the group still exists.
    """
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    for entry in os.listdir('/proc'):
        if entry.isdigit() and _live_member(entry, pgid):
            return True
    return False


def _live_member(pid, pgid):
    try:
        with open('/proc/%s/stat' % pid, 'rb') as f:
            data = f.read()
    except OSError:
        return False
    fields = data[data.rfind(b')') + 2:].split()
    return len(fields) > 2 and fields[2] == b'%d' % pgid and fields[0] != b'Z'


def raise_fd_limit():
    """Soft RLIMIT_NOFILE up to the hard limit: each child costs a few fds."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass


def has_capability(number):
    """True if this process holds capability `number` (CapEff of /proc/self/status)."""
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('CapEff:'):
                    return bool(int(line.split()[1], 16) >> number & 1)
    except (OSError, ValueError, IndexError):
        pass
    return os.geteuid() == 0


def pids_marked(key, marks):
    """The processes whose environment holds `key`=one of `marks` (readable ones:
    all for root, one's own otherwise). Reads every process's environ: only for
    the rare worker that died in the middle of a start."""
    wanted = {('%s=%s' % (key, mark)).encode() for mark in marks}
    if not wanted:
        return []
    found = []
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                with open('/proc/%s/environ' % entry, 'rb') as f:
                    environ = f.read().split(b'\0')
            except OSError:
                continue
            if wanted.intersection(environ):
                found.append(int(entry))
    return found
