"""Shared test helpers: real daemons, deadlines, /proc scans. No bare sleeps."""
import errno
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = '/usr/bin/python3' if os.access('/usr/bin/python3', os.X_OK) else sys.executable
TIMEOUT = 15.0
IS_ROOT = os.geteuid() == 0


def command(program):
    """How to run one of our programs: the installed script next to this
    interpreter when there is one, else the checkout's bin/ wrapper."""
    script = os.path.join(os.path.dirname(sys.executable), program)
    if os.access(script, os.X_OK):
        return [script]
    return [sys.executable, os.path.join(REPO, 'bin', program)]


def wait_until(predicate, timeout=TIMEOUT, interval=0.01, message=None):
    """Poll `predicate` until it returns something true; fail after `timeout`.
    `message` may be a function, called only on failure (e.g. to show a log)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            if callable(message):
                message = message()
            raise AssertionError('timed out after %gs: %s' % (timeout, message or predicate))
        time.sleep(interval)


def free_port():
    """A TCP port of 127.0.0.1 that nothing is bound to right now, below the
    kernel's ephemeral range: a port the kernel hands out (bind to port 0) may
    be taken by any outgoing connection before the daemon under test binds it."""
    first_ephemeral = _first_ephemeral_port()
    for _ in range(200):
        port = random.randrange(20000, first_ephemeral)
        with socket.socket() as sock:
            try:
                sock.bind(('127.0.0.1', port))
            except OSError:
                continue
            return port
    raise AssertionError('no free TCP port in 20000-%d' % first_ephemeral)


def _first_ephemeral_port():
    try:
        with open('/proc/sys/net/ipv4/ip_local_port_range') as f:
            first = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        first = 32768               # Linux's default
    return max(first, 20100)


def status_mib(pid, field):
    """A memory figure of /proc/PID/status (VmRSS, VmHWM...), in MiB."""
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1]) / 1024.0
    raise AssertionError('no %s for pid %d' % (field, pid))


def peak_rss_mib(pid):
    """The highest resident memory of process `pid` so far (VmHWM), in MiB."""
    return status_mib(pid, 'VmHWM')


class OutOfDescriptors:
    """Stands for a listening socket: its accept() fails as with no descriptor left
    (EMFILE) while `failing` is set, and counts its calls."""

    def __init__(self, real):
        self.real, self.failing, self.calls = real, True, 0

    def accept(self):
        self.calls += 1
        if self.failing:
            raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))
        return self.real.accept()

    def fileno(self):
        return self.real.fileno()

    def close(self):
        self.real.close()


def write_json(path, doc, mode=0o644):
    """Replace `path` atomically, as an editor or the client would."""
    tmp = '%s.%s.tmp' % (path, uuid.uuid4().hex[:8])
    with open(tmp, 'w') as f:
        json.dump(doc, f, indent=1)
    os.chmod(tmp, mode)
    os.rename(tmp, path)


def read_json(path):
    with open(path) as f:
        return json.load(f)


def pid_alive(pid):
    """True if `pid` exists and is not a zombie."""
    try:
        with open('/proc/%d/stat' % pid, 'rb') as f:
            data = f.read()
    except OSError:
        return False
    return data[data.rfind(b')') + 2:][:1] != b'Z'


def pids_with(marker):
    """Pids of live processes whose command line contains `marker`."""
    found = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open('/proc/%s/cmdline' % entry, 'rb') as f:
                cmdline = f.read()
        except OSError:
            continue
        if marker.encode() in cmdline and pid_alive(int(entry)):
            found.append(int(entry))
    return sorted(found)


def read_pid(path):
    try:
        with open(path) as f:
            text = f.read().strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None


class Workdir:
    """A fresh directory readable by everyone (children may run as nobody)."""

    def __init__(self):
        self.path = tempfile.mkdtemp(prefix='dpdt-', dir='/tmp')
        os.chmod(self.path, 0o755)
        self.marker = 'dpdt-' + uuid.uuid4().hex[:12]

    def policy(self, name='policy.json', **keys):
        """A node policy file for `--policy`: by default, managed files may run
        anyone's processes and use any path in this directory (keys override)."""
        path = self.join(name)
        write_json(path, dict({'allowed_users': ['*'], 'allowed_paths': [self.path]}, **keys))
        return path

    def join(self, *parts):
        return os.path.join(self.path, *parts)

    def actor(self, name, mode, *args, **keys):
        """A PROCESS running tests/actor.py, found later by its marker."""
        proc = {'name': name, 'run': PYTHON,
                'args': [os.path.join(REPO, 'tests', 'actor.py'), mode] + [str(a) for a in args]
                + ['--marker=%s-%s' % (self.marker, name)],
                'user': 'root' if IS_ROOT else _me()}
        proc.update(keys)
        return proc

    def marker_of(self, name):
        return '--marker=%s-%s' % (self.marker, name)

    def cleanup(self):
        for pid in pids_with(self.marker):
            _kill(pid)
        shutil.rmtree(self.path, ignore_errors=True)


def _me():
    import pwd
    return pwd.getpwuid(os.geteuid()).pw_name


def _kill(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# A root daemon on a host without cgroups: its own mount namespace, an empty
# /sys/fs/cgroup (what a worker without a writable hierarchy does, as root).
WITHOUT_CGROUPS = ['unshare', '--mount', 'sh', '-ec',
                   'mount -t tmpfs none /sys/fs/cgroup; exec "$@"', 'sh']


class Daemon:
    """A real daemon started with `-f -v`; everything it logs lands in a file."""

    def __init__(self, program, config, extra=(), env=None, prefix=()):
        """`prefix`: a command that execs the daemon (it keeps the pid), such as
        WITHOUT_CGROUPS."""
        self.program, self.config, self.extra, self.env = program, config, list(extra), env
        self.prefix = list(prefix)
        self.log_path = config + '.%s.log' % program
        self.log_offset = 0
        self.proc = None

    def start(self, wait_ready=True, timeout=TIMEOUT):
        with open(self.log_path, 'ab') as log:
            self.log_offset = log.tell()      # log() shows this run only
            self.proc = subprocess.Popen(
                self.prefix + command(self.program) + ['-f', '-v'] + self.extra + [self.config],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, env=self.env)
        if wait_ready:
            self.wait_log('ready (pid %d' % self.proc.pid, timeout)
        return self

    @property
    def pid(self):
        return self.proc.pid

    def log(self):
        try:
            with open(self.log_path, errors='replace') as f:
                f.seek(self.log_offset)
                return f.read()
        except OSError:
            return ''

    def wait_log(self, text, timeout=TIMEOUT, count=1):
        def seen():
            if self.proc.poll() is not None and self.log().count(text) < count:
                raise AssertionError('%s exited (%s) before logging %r:\n%s'
                                     % (self.program, self.proc.returncode, text, self.log()))
            return self.log().count(text) >= count
        wait_until(seen, timeout, message='%r in the log of %s:\n%s'
                   % (text, self.program, self.log()[-3000:]))

    def signal(self, signum):
        self.proc.send_signal(signum)

    def wait(self, timeout=TIMEOUT):
        return self.proc.wait(timeout)

    def stop(self, timeout=TIMEOUT):
        """TERM, then wait; KILL if it does not go (and fail the wait)."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError('%s did not stop on TERM within %gs:\n%s'
                                 % (self.program, timeout, self.log()[-3000:]))

    def kill9(self):
        self.proc.kill()
        self.proc.wait(TIMEOUT)


class WorkerSite:
    """One dpd-workerd on DIR/worker.json with `procs`, and its state file."""

    def __init__(self, directory, *procs):
        self.config = directory.join('worker.json')
        self.state_file = directory.join('worker.state.json')
        write_json(self.config, {'procs': list(procs)})
        self.daemon = Daemon('dpd-workerd', self.config)

    def start(self):
        self.daemon.start()
        return self

    def record(self, name):
        """The process's record in the state file; None before there is one."""
        try:
            doc = read_json(self.state_file)
        except (OSError, ValueError):
            return None
        return next((p for p in doc['procs'] if p['name'] == name), None)


def run(program, *args, timeout=TIMEOUT, env=None):
    """Run one of our programs to completion; (status, stdout, stderr)."""
    done = subprocess.run(command(program) + list(args), capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, env=env)
    return done.returncode, done.stdout, done.stderr


def answer_lines(sock):
    """Every JSON answer line on a control connection until the other end closes
    it, under a deadline."""
    deadline, data = time.monotonic() + TIMEOUT, bytearray()
    while True:
        left = deadline - time.monotonic()
        assert left > 0, 'the connection was never closed (%d bytes read)' % len(data)
        sock.settimeout(left)
        chunk = sock.recv(1 << 20)
        if not chunk:
            return [json.loads(line) for line in bytes(data).splitlines()]
        data += chunk
