"""The cgroup file system as the worker reads and writes it: where the
hierarchies are mounted and where a process sits in them (/proc), the files that
set a limit in each version, and small file helpers. No policy here: cgroups.py
decides what goes where."""
import os
import re

V1_CONTROLLERS = ('memory', 'cpu', 'pids')
CPU_PERIOD_US = 100000


def limit_files(version, name, value):
    """(file, text) pairs that set one limit in a hierarchy of `version`."""
    if name == 'memory_max':
        return [('memory.max', str(value))] if version == 2 else \
            [('memory.limit_in_bytes', str(value))]
    if name == 'memory_high':
        return [('memory.high', str(value))] if version == 2 else \
            [('memory.soft_limit_in_bytes', str(value))]
    if name == 'cpu_max':
        quota = max(1000, int(value * CPU_PERIOD_US))
        return [('cpu.max', '%d %d' % (quota, CPU_PERIOD_US))] if version == 2 else \
            [('cpu.cfs_period_us', str(CPU_PERIOD_US)), ('cpu.cfs_quota_us', str(quota))]
    if name == 'cpu_weight':
        return [('cpu.weight', str(value))] if version == 2 else \
            [('cpu.shares', str(max(2, value * 1024 // 100)))]
    return [('pids.max', str(value))]


def write(directory, name, text):
    fd = os.open(os.path.join(directory, name), os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def read(path):
    """A small kernel file's text (read at every start and exit: a plain open() and
    its text wrapper cost several times the two reads)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                return b''.join(chunks).decode()
            chunks.append(chunk)
    finally:
        os.close(fd)


def subdirs(path):
    try:
        return [entry.name for entry in os.scandir(path) if entry.is_dir()]
    except OSError:
        return []


def rmdir_quietly(path):
    try:
        os.rmdir(path)
    except OSError:
        pass      # not empty (a process left running), or gone


def rss(pid):
    try:
        with open('/proc/%d/statm' % pid) as f:
            return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')
    except (OSError, ValueError, IndexError):
        return None


def join(base, name):
    return base.rstrip('/') + '/' + name


def escape(path):
    """A config's path as one cgroup name: /var/lib/x.json -> var-lib-x.json."""
    return re.sub(r'[^A-Za-z0-9._@:+-]', lambda m: '\\x%02x' % ord(m.group()),
                  path.strip('/').replace('/', '-')) or 'root'


def mounts(mountinfo):
    """{'cgroup2': mount point, 'memory': v1 mount point, ...}."""
    found = {}
    for line in _lines(mountinfo):
        left, _, right = line.partition(' - ')
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        point, fstype, options = fields[4], tail[0], tail[2].split(',')
        if fstype == 'cgroup2':
            found.setdefault('cgroup2', point)
        elif fstype == 'cgroup':
            for controller in V1_CONTROLLERS:
                if controller in options:
                    found.setdefault(controller, point)
    return found


def own_paths(path):
    """{'' (v2): path, 'memory': path, ...} from a /proc/PID/cgroup file."""
    own = {}
    for line in _lines(path):
        parts = line.split(':', 2)
        if len(parts) != 3:
            continue
        if parts[0] == '0' and parts[1] == '':
            own[''] = parts[2]
        for controller in parts[1].split(','):
            if controller in V1_CONTROLLERS:
                own[controller] = parts[2]
    return own


def _lines(path):
    """A /proc file's lines; none if it cannot be read (no such file: no cgroups)."""
    try:
        return read(path).splitlines()
    except OSError:
        return []
