"""Processes this benchmark starts, and what /proc says about them."""
import ctypes
import os
import resource
import shlex
import signal
import socket
import subprocess
import sys
from collections import Counter

TICK = os.sysconf('SC_CLK_TCK')


class Processes:
    """Every process this benchmark starts; `stop_all` leaves none behind."""

    def __init__(self):
        self.live = []

    def start(self, argv, log_path, env=None, **keys):
        with open(log_path, 'ab') as log:
            proc = subprocess.Popen(argv, stdin=keys.pop('stdin', subprocess.DEVNULL),
                                    stdout=keys.pop('stdout', log), stderr=log,
                                    start_new_session=True, env=env, **keys)
        self.live.append(proc)
        return proc

    def stop(self, proc, timeout=10.0):
        """SIGTERM, wait; SIGKILL by pid when it does not go."""
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if proc in self.live:
            self.live.remove(proc)
        return proc.returncode

    def kill9(self, proc):
        proc.kill()
        proc.wait(5)
        self.live.remove(proc)

    def stop_all(self):
        for proc in reversed(list(self.live)):
            try:
                self.stop(proc)
            except Exception as err:  # keep stopping the others
                print('# could not stop pid %d: %s' % (proc.pid, err), file=sys.stderr)
        kill_orphans()


def kill_orphans():
    """Orphans re-parented to us (we are their subreaper): SIGKILL each by pid."""
    for pid in children_of(os.getpid()):
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (OSError, ChildProcessError):
            pass


def become_subreaper():
    """Orphans of the daemons we start (a killed worker's children) come to us."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)   # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def command_of(env_name, program):
    """The command line of one of our daemons: $ENV_NAME, else next to this python."""
    if os.environ.get(env_name):
        return shlex.split(os.environ[env_name])
    return [os.path.join(os.path.dirname(sys.executable), program)]


def free_ports(count, rng):
    """Ports that bind now, below the ephemeral range (see bench/cluster.py)."""
    with open('/proc/sys/net/ipv4/ip_local_port_range') as f:
        low = int(f.read().split()[0])
    ports = []
    while len(ports) < count:
        port = rng.randrange(max(1024, low - 12000), low)
        if port in ports:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(('127.0.0.1', port))
            except OSError:
                continue
        ports.append(port)
    return ports


# ---------------------------------------------------------------------- /proc

def loadavg():
    with open('/proc/loadavg') as f:
        return [float(x) for x in f.read().split()[:3]]


def _stat_fields(path):
    """The fields of a /proc stat file after the command name."""
    with open(path, 'rb') as f:
        return f.read().rsplit(b')', 1)[1].split()


def proc_cpu_seconds(pid):
    """utime + stime of every thread of `pid`, in seconds."""
    fields = _stat_fields('/proc/%d/stat' % pid)
    return (int(fields[11]) + int(fields[12])) / TICK


def thread_cpu_seconds(pid):
    """{thread group: CPU seconds}: the main thread, libzmq's own threads (ZMQbg/...),
    and the other Python threads together."""
    groups = Counter()
    for tid in os.listdir('/proc/%d/task' % pid):
        try:
            with open('/proc/%d/task/%s/comm' % (pid, tid)) as f:
                comm = f.read().strip()
            fields = _stat_fields('/proc/%d/task/%s/stat' % (pid, tid))
        except OSError:
            continue
        group = 'main' if int(tid) == pid else comm if comm.startswith('ZMQbg') else \
            'python threads'
        groups[group] += (int(fields[11]) + int(fields[12])) / TICK
    return groups


def proc_memory_mib(pid):
    """(VmRSS, VmHWM) in MiB."""
    values = {}
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            key, _, rest = line.partition(':')
            if key in ('VmRSS', 'VmHWM'):
                values[key] = int(rest.split()[0]) / 1024
    return values.get('VmRSS'), values.get('VmHWM')


def children_of(pid):
    """{child pid: argv} of `pid` (every thread's children)."""
    found = {}
    try:
        tasks = os.listdir('/proc/%d/task' % pid)
    except OSError:
        return found
    for tid in tasks:
        try:
            with open('/proc/%d/task/%s/children' % (pid, tid)) as f:
                pids = [int(p) for p in f.read().split()]
        except OSError:
            continue
        for child in pids:
            argv = _cmdline(child)
            if argv is not None:
                found[child] = argv
    return found


def _cmdline(pid):
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as f:
            return f.read().split(b'\0')[:-1]
    except OSError:
        return None
