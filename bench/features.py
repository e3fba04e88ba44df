#!/usr/bin/env python3
"""New capabilities (SPEC 6) with the real worker: health checks, readiness,
dependencies, `dpd-ctl restart` and `dpd-ctl logs -f` (PERFORMANCE.md, "Raised
targets", table "New capabilities").

    .venv-test/bin/python bench/features.py                  # about 3 minutes
    .venv-test/bin/python bench/features.py --only restart,logs --runs 50

Each part runs its own `dpd-workerd -f` ($DPD_WORKERD, default: next to this
interpreter) on a worker file in a temporary directory owned by root (mode
0755: a root-owned file without `_diprocd` is trusted, no policy needed); its
processes run as `nobody` (the default user) and are stopped with the worker
(SIGTERM) at the end of the part. The moment the state file shows a change is
taken with inotify (IN_MOVED_TO of CONFIG.state.json in its directory, ctypes):
the time we wake up on the event, then read the file. Every time is
CLOCK_MONOTONIC (`time.monotonic()`, shared by all processes); the child
programs write theirs into a file of their own directory.

1. tcp: N processes (`/bin/sleep`), each with a `tcp` check every 10 s against
   one listener of ours on 127.0.0.1 (a thread that accepts and closes, and
   counts). Once every process is `running` (its first check passed) and a few
   seconds more, the worker's own CPU over a window: utime+stime of the worker
   process in /proc/PID/stat (all its threads, not its children), as % of one
   core. Its RSS at the end of the window is reported too.
2. exec: the same with M processes and an `exec` check (`/bin/true`) every
   10 s: the worker's utime+stime only; the checks it reaped (cutime+cstime)
   are reported apart.
3. and 5. restart: one `notify` process, a small Python program that marks its
   start, says READY=1 on $NOTIFY_SOCKET (marking the time just before the
   send) and marks the TERM it gets. R times: `dpd-ctl restart -c CONFIG NAME`
   is exec'd; taken are the time the state file shows the new pid `running`,
   the time dpd-ctl returns (a thread waits for it), and the child's marks:
   READY=1 sent -> running in the state file (figure 3); exec'd -> new process
   started, -> running in the state file, -> dpd-ctl returned (figure 5); and
   the worker's share: the old process's TERM -> the new one's first line,
   which holds the new child's interpreter start (measured apart: exec of the
   same program by us -> its first line).
4. chain: the worker runs an empty list; the file is replaced (temp file and
   rename) by one `notify` process, or by a chain of 10 where each `depends`
   on the one before, all ready at once. From just before the rename to the
   state file showing the (last) process `running`; then the list is emptied
   again and its processes gone before the next round. Target: the chain
   within 10x a single start + 50 ms (medians).
6. logs: a process with `logs` writes a line with its monotonic time every
   100 ms; `dpd-ctl logs -c CONFIG -n 0 -f NAME` is read through a pipe, and
   each line it prints is timed as we read it (the first lines, written while
   dpd-ctl started, are left out).
"""
import argparse
import ctypes
import json
import os
import platform
import pwd
import select
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

BIN = os.path.dirname(sys.executable)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PARTS = ('tcp', 'exec', 'restart', 'chain', 'logs')
TARGETS = {'tcp_cpu_pct': 3.0, 'exec_cpu_pct': 5.0, 'ready_to_state_ms': 5.0,
           'restart_ms': 150.0, 'logs_ms': 50.0, 'rss_1000_mib': 30.0}
CLK_TCK = os.sysconf('SC_CLK_TCK')
mono = time.monotonic

# The child: `notify MARKS` (READY=1 at once; marks start, ready, term),
# `tick` (a line with its time every 100 ms on stdout), `probe` (its start, then exit).
CHILD = r'''import time; T0 = time.monotonic()
import os, signal, socket, sys
mode = sys.argv[1]
if mode == 'probe':
    os.write(1, b'%.6f\n' % T0)
    sys.exit(0)
if mode == 'tick':
    for n in range(10 ** 9):
        os.write(1, b'tick %d %.6f\n' % (n, time.monotonic()))
        time.sleep(0.1)
marks = os.open(sys.argv[2], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
def mark(what, at):
    os.write(marks, b'%s %d %.6f\n' % (what, os.getpid(), at))
def on_term(signum, frame):
    mark(b'term', time.monotonic())
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)
mark(b'start', T0)
signal.signal(signal.SIGTERM, on_term)
address = os.environ.get('NOTIFY_SOCKET')
if address:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sent = time.monotonic()
    sock.sendto(b'READY=1', '\0' + address[1:] if address.startswith('@') else address)
    mark(b'ready', sent)
while True:
    signal.pause()
'''


class BenchError(Exception):
    pass


def tool(name):
    override = os.environ.get('DPD_WORKERD') if name == 'dpd-workerd' else None
    return override.split() if override else [os.path.join(BIN, name)]


def ms(seconds):
    return seconds * 1000.0


def summary(samples):
    ordered = sorted(samples)
    return {'n': len(ordered), 'median': statistics.median(ordered),
            'p95': ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))],
            'min': ordered[0], 'max': ordered[-1]}


def wait_for(predicate, timeout, what, step=0.05):
    deadline = mono() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if mono() > deadline:
            raise BenchError('timed out after %g s waiting for %s' % (timeout, what))
        time.sleep(step)


# ------------------------------------------------------------------ files and /proc

def write_json(path, doc, mode=0o644):
    """Replace `path` atomically (temp file + rename): the worker sees one edit."""
    temp = path + '.tmp'
    with open(temp, 'w') as f:
        json.dump(doc, f)
    os.chmod(temp, mode)
    os.rename(temp, path)


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def proc_stat(pid):
    """(utime + stime, cutime + cstime) of `pid` in seconds: all its threads."""
    with open('/proc/%d/stat' % pid) as f:
        fields = f.read().rpartition(')')[2].split()
    own = int(fields[11]) + int(fields[12])
    reaped = int(fields[13]) + int(fields[14])
    return own / CLK_TCK, reaped / CLK_TCK


def rss_mib(pid):
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) / 1024.0
    return None


class StateWatch:
    """inotify (ctypes) on the state file's directory: the moment it is renamed into place."""

    IN_MOVED_TO, IN_CLOEXEC, IN_NONBLOCK = 0x80, 0o2000000, 0o4000
    EVENT = struct.Struct('iIII')

    def __init__(self, path):
        self.path, self.name = path, os.path.basename(path).encode()
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self.libc.inotify_init1(self.IN_CLOEXEC | self.IN_NONBLOCK)
        if self.fd < 0 or self.libc.inotify_add_watch(
                self.fd, os.path.dirname(path).encode(), self.IN_MOVED_TO) < 0:
            raise OSError(ctypes.get_errno(), 'inotify on %s' % path)

    def _renamed(self, timeout):
        """The time we woke up on a rename of the state file within `timeout`, else None."""
        if not select.select([self.fd], [], [], max(0.0, timeout))[0]:
            return None
        seen = mono()
        try:
            data = os.read(self.fd, 1 << 16)
        except BlockingIOError:
            return None
        offset = 0
        hit = False
        while offset < len(data):
            _, _, _, size = self.EVENT.unpack_from(data, offset)
            name = data[offset + 16:offset + 16 + size].rstrip(b'\0')
            hit = hit or name == self.name
            offset += 16 + size
        return seen if hit else None

    def until(self, predicate, timeout, what):
        """(time seen, state) once predicate(state) holds: at once if it does now."""
        doc = read_json(self.path)
        if doc is not None and predicate(doc):
            return mono(), doc
        deadline = mono() + timeout
        while mono() < deadline:
            seen = self._renamed(deadline - mono())
            if seen is None:
                continue
            doc = read_json(self.path)
            if doc is not None and predicate(doc):
                return seen, doc
        raise BenchError('timed out after %g s waiting for %s' % (timeout, what))

    def close(self):
        os.close(self.fd)


def procs_of(doc):
    return {p['name']: p for p in doc.get('procs') or ()}


def running(doc, name, not_pid=None):
    entry = procs_of(doc).get(name)
    return bool(entry and entry['state'] == 'running' and entry['pid'] != not_pid)


# ------------------------------------------------------------------ the worker

class Worker:
    """A real `dpd-workerd -f` on DIR/NAME.json, stopped by SIGTERM."""

    def __init__(self, workdir, name, procs):
        self.config = os.path.join(workdir, name + '.json')
        self.state_path = os.path.join(workdir, name + '.state.json')
        self.err_path = os.path.join(workdir, name + '.err')
        write_json(self.config, {'procs': procs})
        self.watch = StateWatch(self.state_path)
        with open(self.err_path, 'w') as err:
            self.proc = subprocess.Popen(tool('dpd-workerd') + ['-f', self.config],
                                         stdin=subprocess.DEVNULL, stdout=err, stderr=err)
        self.pid = self.proc.pid
        self.until(lambda d: d.get('pid') == self.pid, 30, 'the worker\'s state file')

    def until(self, predicate, timeout, what):
        if self.proc.poll() is not None:
            raise BenchError('the worker exited (%s): %s' % (self.proc.returncode, self.tail()))
        return self.watch.until(predicate, timeout, what)

    def state(self):
        return read_json(self.state_path) or {}

    def edit(self, procs):
        write_json(self.config, {'procs': procs})

    def tail(self, lines=8):
        with open(self.err_path, errors='replace') as f:
            return ''.join(f.readlines()[-lines:])

    def stop(self, timeout=90):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                raise BenchError('the worker did not stop within %g s' % timeout)
        self.watch.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def all_running(count):
    return lambda doc: sum(p['state'] == 'running' for p in doc.get('procs') or ()) == count


def none_left(doc):
    return not [p for p in doc.get('procs') or () if p['state'] not in ('stopped',)]


# ------------------------------------------------------------------ 1, 2: checks

class Listener:
    """One TCP listener on 127.0.0.1: accepts, closes, counts (the tcp checks' peer)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(('127.0.0.1', 0))
        self.sock.listen(4096)
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.accepted, self.stopping = 0, threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stopping.is_set():
            if not select.select([self.sock], [], [], 0.2)[0]:
                continue
            while True:
                try:
                    conn, _ = self.sock.accept()
                except BlockingIOError:
                    break
                conn.close()
                self.accepted += 1

    def close(self):
        self.stopping.set()
        self.thread.join(5)
        self.sock.close()


def bench_checks(workdir, kind, count, opts):
    """Worker CPU over a window with `count` processes checked every 10 s."""
    listener = Listener() if kind == 'tcp' else None
    check = ({'tcp': '127.0.0.1:%d' % listener.port} if listener
             else {'exec': ['/bin/true']})
    procs = [{'name': '%s-%04d' % (kind, i), 'run': '/bin/sleep', 'args': ['1000000'],
              'health': dict(check, interval=10)} for i in range(count)]
    try:
        started = mono()
        with Worker(workdir, 'checks-' + kind, procs) as worker:
            worker.until(all_running(count), 120 + count / 10.0, 'every process running')
            all_up = mono() - started
            time.sleep(opts.settle)
            cpu0, reaped0, accepted0, t0 = proc_stat(worker.pid) + (
                listener.accepted if listener else 0, mono())
            time.sleep(opts.window)
            cpu1, reaped1, accepted1, t1 = proc_stat(worker.pid) + (
                listener.accepted if listener else 0, mono())
            rss = rss_mib(worker.pid)
            ok = sum(p.get('health') == 'healthy' for p in worker.state().get('procs') or ())
    finally:
        if listener:
            listener.close()
    window = t1 - t0
    figure = {'processes': count, 'interval_s': 10, 'window_s': round(window, 2),
              'all_running_s': round(all_up, 2), 'healthy_at_end': ok,
              'worker_cpu_s': round(cpu1 - cpu0, 3),
              'worker_cpu_pct': 100.0 * (cpu1 - cpu0) / window,
              'checks_cpu_pct': 100.0 * (reaped1 - reaped0) / window,
              'worker_rss_mib': round(rss, 1)}
    if listener:
        figure['checks_per_s'] = round((accepted1 - accepted0) / window, 1)
    return figure


# ------------------------------------------------------------------ 3, 5: restart

def read_marks(path):
    """{(what, pid): time} from the children's marks file."""
    marks = {}
    try:
        with open(path) as f:
            for line in f:
                what, pid, at = line.split()
                marks[what, int(pid)] = float(at)
    except OSError:
        pass
    return marks


def notify_proc(name, workdir, marks, **extra):
    return dict({'name': name, 'run': sys.executable,
                 'args': ['-S', os.path.join(workdir, 'child.py'), 'notify', marks],
                 'notify': True}, **extra)


def interpreter_start(workdir, runs=10):
    """Exec of the child program by us -> its first line (ms, median)."""
    samples = []
    for _ in range(runs):
        t0 = mono()
        out = subprocess.run([sys.executable, '-S', os.path.join(workdir, 'child.py'), 'probe'],
                             capture_output=True, timeout=10).stdout
        samples.append(ms(float(out) - t0))
    return statistics.median(samples)


def timed_wait(proc, box):
    proc.wait()
    box.append(mono())


def timed_exit(pid, box, timeout=15):
    """The time process `pid` (not our child) ends: poll on its pidfd."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        if select.select([fd], [], [], timeout)[0]:
            box.append(mono())
    finally:
        os.close(fd)


def restart_once(worker, marks):
    """One `dpd-ctl restart`: the times of its steps, in ms from the exec."""
    old = procs_of(worker.state())['n']['pid']
    returned, ended = [], []
    ender = threading.Thread(target=timed_exit, args=(old, ended))
    ender.start()
    t0 = mono()
    ctl = subprocess.Popen(tool('dpd-ctl') + ['restart', '-c', worker.config, 'n'],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    waiter = threading.Thread(target=timed_wait, args=(ctl, returned))
    waiter.start()
    seen, doc = worker.until(lambda d: running(d, 'n', not_pid=old), 15, 'n running again')
    new = procs_of(doc)['n']['pid']
    waiter.join(15)
    ender.join(15)
    if not ended:
        raise BenchError('the old process %d did not end' % old)
    if not returned or ctl.returncode != 0:
        raise BenchError('dpd-ctl restart: %s %r' % (ctl.returncode, ctl.stdout.read()))
    ctl.stdout.close()
    got = wait_for(lambda: (lambda m: m if ('ready', new) in m and ('term', old) in m
                            else None)(read_marks(marks)), 5, 'the children\'s marks', 0.005)
    return {'ready_to_state': ms(seen - got['ready', new]),
            'exec_to_started': ms(got['start', new] - t0),
            'exec_to_running': ms(seen - t0),
            'exec_to_returned': ms(returned[0] - t0),
            'exec_to_old_term': ms(got['term', old] - t0),
            'term_to_started': ms(got['start', new] - got['term', old]),
            'ended_to_started': ms(got['start', new] - ended[0])}


def kill_once(worker, marks):
    """For comparison: SIGKILL of the process -> the new one's first line, and running."""
    old = procs_of(worker.state())['n']['pid']
    t0 = mono()
    os.kill(old, signal.SIGKILL)
    seen, doc = worker.until(lambda d: running(d, 'n', not_pid=old), 15, 'n running again')
    new = procs_of(doc)['n']['pid']
    got = wait_for(lambda: (lambda m: m if ('ready', new) in m else None)(read_marks(marks)),
                   5, 'the marks of the new process', 0.005)
    return {'kill_to_started': ms(got['start', new] - t0), 'kill_to_running': ms(seen - t0)}


def latest_start(marks):
    starts = [(at, pid) for (what, pid), at in read_marks(marks).items() if what == 'start']
    return max(starts) if starts else (None, None)


def bench_floor(workdir, datadir, opts):
    """floor (../shared/bench/floor.py) with the same child, as root: SIGKILL -> the new
    one's first line, median (ms); None without floor."""
    if not os.path.exists(opts.floor):
        return None
    marks, config = os.path.join(datadir, 'floor.marks'), os.path.join(workdir, 'floor.json')
    write_json(config, {'procs': [{'name': 'n', 'restart': True, 'pid_file': None,
                                   'log': os.path.join(workdir, 'logs', 'floor.log'),
                                   'argv': [sys.executable, '-S', os.path.join(
                                       workdir, 'child.py'), 'notify', marks]}]})
    floor = subprocess.Popen([sys.executable, opts.floor, config], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    samples = []
    try:
        wait_for(lambda: latest_start(marks)[1], 10, 'floor\'s child')
        for _ in range(opts.runs):
            time.sleep(0.2)
            old = latest_start(marks)[1]
            t0 = mono()
            os.kill(old, signal.SIGKILL)
            at, _ = wait_for(lambda: (lambda m: m if m[1] != old else None)(latest_start(marks)),
                             10, 'floor\'s new child', 0.002)
            samples.append(ms(at - t0))
    finally:
        floor.send_signal(signal.SIGTERM)
        floor.wait(30)
    return summary(samples)


def bench_restart(workdir, datadir, opts):
    marks = os.path.join(datadir, 'restart.marks')
    samples = {}
    with Worker(workdir, 'restart', [notify_proc('n', workdir, marks)]) as worker:
        worker.until(lambda d: running(d, 'n'), 30, 'n running')
        for _ in range(opts.runs):
            time.sleep(0.2)
            for key, value in restart_once(worker, marks).items():
                samples.setdefault(key, []).append(value)
        for _ in range(opts.runs):
            time.sleep(0.2)
            for key, value in kill_once(worker, marks).items():
                samples.setdefault(key, []).append(value)
    figure = {key: summary(values) for key, values in samples.items()}
    figure['child_interpreter_start_ms'] = interpreter_start(workdir)
    figure['floor_kill_to_started'] = bench_floor(workdir, datadir, opts)
    figure['runs'] = opts.runs
    return figure


# ------------------------------------------------------------------ 4: chain

def chain_procs(workdir, marks, length):
    procs = [notify_proc('c%02d' % i, workdir, marks) for i in range(length)]
    for before, proc in zip(procs, procs[1:]):
        proc['depends'] = [before['name']]
    return procs


def saved_to_running(worker, procs, marks):
    """Replace the empty list by `procs`, then empty it again. In ms from just before
    the rename: the last one running, and its first line; READY=1 -> running."""
    last = procs[-1]['name']
    t0 = mono()
    worker.edit(procs)
    seen, doc = worker.until(lambda d: running(d, last), 30, '%s running' % last)
    pid = procs_of(doc)[last]['pid']
    got = wait_for(lambda: (lambda m: m if ('ready', pid) in m else None)(read_marks(marks)),
                   5, 'the marks of %s' % last, 0.005)
    worker.edit([])
    worker.until(none_left, 30, 'the list emptied')
    return {'running': ms(seen - t0), 'started': ms(got['start', pid] - t0),
            'ready_to_running': ms(seen - got['ready', pid])}


def bench_chain(workdir, datadir, opts):
    marks = os.path.join(datadir, 'chain.marks')
    single, chain = {}, {}
    with Worker(workdir, 'chain', []) as worker:
        for _ in range(opts.chain_reps):
            for samples, procs in ((single, [notify_proc('s', workdir, marks)]),
                                   (chain, chain_procs(workdir, marks, opts.chain))):
                time.sleep(0.2)
                for key, value in saved_to_running(worker, procs, marks).items():
                    samples.setdefault(key, []).append(value)
    single = {key: summary(values) for key, values in single.items()}
    chain = {key: summary(values) for key, values in chain.items()}
    return {'length': opts.chain, 'reps': opts.chain_reps, 'single_ms': single,
            'chain_ms': chain, 'target_ms': 10 * single['running']['median'] + 50}


# ------------------------------------------------------------------ 6: logs -f

def read_line(stream, buffer, deadline):
    """The next line of a pipe (bytes), waiting until `deadline`."""
    while b'\n' not in buffer:
        if not select.select([stream], [], [], max(0.0, deadline - mono()))[0]:
            raise BenchError('no line from dpd-ctl logs -f before the deadline')
        chunk = os.read(stream.fileno(), 1 << 16)
        if not chunk:
            raise BenchError('dpd-ctl logs -f ended')
        buffer.extend(chunk)
    line, _, rest = bytes(buffer).partition(b'\n')
    buffer[:] = rest
    return line


def bench_logs(workdir, opts):
    log = os.path.join(workdir, 'logs', 'ticker.log')
    proc = {'name': 'ticker', 'run': sys.executable, 'logs': log,
            'args': ['-S', os.path.join(workdir, 'child.py'), 'tick']}
    latencies, skip = [], 5
    with Worker(workdir, 'logs', [proc]) as worker:
        worker.until(lambda d: running(d, 'ticker'), 30, 'ticker running')
        wait_for(lambda: os.path.exists(log) and os.path.getsize(log) > 0, 10, 'the log file')
        ctl = subprocess.Popen(tool('dpd-ctl') + ['logs', '-c', worker.config, '-n', '0', '-f',
                                                  'ticker'], stdout=subprocess.PIPE)
        try:
            buffer, deadline = bytearray(), mono() + 30 + opts.lines * 0.2
            while len(latencies) < opts.lines:
                line = read_line(ctl.stdout, buffer, deadline)
                seen = mono()
                if skip:
                    skip -= 1
                    continue
                latencies.append(ms(seen - float(line.split()[2])))
        finally:
            ctl.terminate()
            ctl.wait(10)
    return {'lines': len(latencies), 'line_to_printed_ms': summary(latencies)}


# ------------------------------------------------------------------ main

def prepare(workdir):
    """DIR (root, 0755): the child program and logs/; DIR/data is nobody's (the marks)."""
    os.chmod(workdir, 0o755)
    with open(os.path.join(workdir, 'child.py'), 'w') as f:
        f.write(CHILD)
    os.mkdir(os.path.join(workdir, 'logs'), 0o755)
    datadir = os.path.join(workdir, 'data')
    os.mkdir(datadir, 0o755)
    nobody = pwd.getpwnam('nobody')
    os.chown(datadir, nobody.pw_uid, nobody.pw_gid)
    return datadir


def run(opts, parts):
    figures = {}
    workdir = tempfile.mkdtemp(prefix='dpd-features-')
    try:
        datadir = prepare(workdir)
        if 'tcp' in parts:
            figures['tcp'] = bench_checks(workdir, 'tcp', opts.tcp_procs, opts)
        if 'exec' in parts:
            figures['exec'] = bench_checks(workdir, 'exec', opts.exec_procs, opts)
        if 'restart' in parts:
            figures['restart'] = bench_restart(workdir, datadir, opts)
        if 'chain' in parts:
            figures['chain'] = bench_chain(workdir, datadir, opts)
        if 'logs' in parts:
            figures['logs'] = bench_logs(workdir, opts)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return figures


def verdict(value, target):
    return 'pass' if value <= target else 'MISS'


def floor_target(value, floor):
    if floor is None:
        return '≤ 2× floor\'s restart (floor not found)', ''
    return ('≤ 2× floor\'s (%.1f ms: %.1f)' % (floor['median'], 2 * floor['median']),
            verdict(value, 2 * floor['median']))


def table(figures):
    rows = []     # (metric, measured, target, verdict)
    for kind, target in (('tcp', TARGETS['tcp_cpu_pct']), ('exec', TARGETS['exec_cpu_pct'])):
        fig = figures.get(kind)
        if not fig:
            continue
        rows.append(('%d processes, `%s` check every 10 s: worker CPU (utime+stime, %g s)' % (
            fig['processes'], kind, fig['window_s']), '%.2f %% of a core' % fig['worker_cpu_pct'],
            '≤ %g %%' % target, verdict(fig['worker_cpu_pct'], target)))
        if kind == 'tcp':
            rows.append(('… checks accepted by our listener', '%.1f /s' % fig['checks_per_s'],
                         '', ''))
        else:
            rows.append(('… the checks\' own CPU (cutime+cstime, apart)',
                         '%.2f %% of a core' % fig['checks_cpu_pct'], '', ''))
        if fig['processes'] == 1000:
            rows.append(('… worker RSS with 1000 processes (cgroups and checks on)',
                         '%.1f MiB' % fig['worker_rss_mib'], '≤ 30 MiB (d.)',
                         verdict(fig['worker_rss_mib'], TARGETS['rss_1000_mib'])))
    restart = figures.get('restart')
    if restart:
        r = restart
        rows += [
            ('`READY=1` sent → `running` in the state file, median / p95',
             '%.2f / %.2f ms' % (r['ready_to_state']['median'], r['ready_to_state']['p95']),
             '≤ 5 ms', verdict(r['ready_to_state']['median'], TARGETS['ready_to_state_ms'])),
            ('`dpd-ctl restart` exec\'d → new process `running` (state file), median / p95',
             '%.1f / %.1f ms' % (r['exec_to_running']['median'], r['exec_to_running']['p95']),
             '≤ 150 ms', verdict(r['exec_to_running']['median'], TARGETS['restart_ms'])),
            ('… exec\'d → new process started (its first line), median',
             '%.1f ms' % r['exec_to_started']['median'], '', ''),
            ('… exec\'d → `dpd-ctl` returned, median', '%.1f ms' % r['exec_to_returned']['median'],
             '', ''),
            ('… exec\'d → old process got TERM (dpd-ctl\'s start, the request), median',
             '%.1f ms' % r['exec_to_old_term']['median'], '', ''),
            ('… the worker: old process\'s TERM → new one\'s first line, median / p95 '
             '(of which its interpreter start %.1f ms)' % r['child_interpreter_start_ms'],
             '%.1f / %.1f ms' % (r['term_to_started']['median'], r['term_to_started']['p95']),
             '', ''),
            ('… the worker: old process ended → new one\'s first line, median / p95',
             '%.1f / %.1f ms' % (r['ended_to_started']['median'], r['ended_to_started']['p95']),
             *floor_target(r['ended_to_started']['median'], r['floor_kill_to_started'])),
            ('… for comparison, SIGKILL of the process → new one\'s first line, median / p95',
             '%.1f / %.1f ms' % (r['kill_to_started']['median'], r['kill_to_started']['p95']),
             '', '')]
        if r['floor_kill_to_started']:
            rows.append(('… floor, the same child as root: SIGKILL → new one\'s first line, '
                         'median / p95', '%.1f / %.1f ms' % (r['floor_kill_to_started']['median'],
                                                           r['floor_kill_to_started']['p95']),
                         '', ''))
    chain = figures.get('chain')
    if chain:
        one, many = chain['single_ms'], chain['chain_ms']
        rows += [
            ('one `notify` process: file saved → `running`, median / p95',
             '%.1f / %.1f ms' % (one['running']['median'], one['running']['p95']), '', ''),
            ('… file saved → its first line; its `READY=1` → `running`, medians',
             '%.1f ms; %.1f ms' % (one['started']['median'], one['ready_to_running']['median']),
             '', ''),
            ('chain of %d `depends`: file saved → the last `running`, median / p95' % (
                chain['length']), '%.1f / %.1f ms' % (many['running']['median'],
                                                      many['running']['p95']),
             '≤ 10× single + 50 ms (%.0f ms)' % chain['target_ms'],
             verdict(many['running']['median'], chain['target_ms']))]
    logs = figures.get('logs')
    if logs:
        fig = logs['line_to_printed_ms']
        rows.append(('`dpd-ctl logs -f`: line written → printed, median / p95 (%d lines)' % (
            logs['lines']), '%.1f / %.1f ms' % (fig['median'], fig['p95']), '≤ 50 ms',
            verdict(fig['median'], TARGETS['logs_ms'])))
    lines = ['| metric | measured | target | |', '|---|---:|---:|---|']
    lines += ['| %s | %s | %s | %s |' % row for row in rows]
    return '\n'.join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--only', default=','.join(PARTS), help='parts to run, of: ' + ','.join(PARTS))
    ap.add_argument('--tcp-procs', type=int, default=1000)
    ap.add_argument('--exec-procs', type=int, default=200)
    ap.add_argument('--window', type=float, default=30.0, help='CPU window, seconds')
    ap.add_argument('--settle', type=float, default=5.0,
                    help='seconds after every process is running, before the window')
    ap.add_argument('--runs', type=int, default=30, help='dpd-ctl restarts')
    ap.add_argument('--chain', type=int, default=10)
    ap.add_argument('--chain-reps', type=int, default=10)
    ap.add_argument('--lines', type=int, default=100, help='log lines timed')
    ap.add_argument('--floor', default=os.path.join(REPO, '..', 'shared', 'bench', 'floor.py'),
                    help='floor.py, the lower bound of the worker\'s restart (default: %(default)s)')
    ap.add_argument('--json', default='results-raw/features.json')
    opts = ap.parse_args()
    parts = [p for p in opts.only.split(',') if p]
    if set(parts) - set(PARTS) or os.geteuid() != 0:
        ap.error('run as root; parts are %s' % ','.join(PARTS))
    figures = run(opts, parts)
    figures['meta'] = {'date': time.strftime('%Y-%m-%d %H:%M'), 'load': os.getloadavg(),
                       'cpus': os.cpu_count(), 'kernel': platform.release(),
                       'python': platform.python_version(), 'options': vars(opts)}
    print(table(figures))
    os.makedirs(os.path.dirname(opts.json) or '.', exist_ok=True)
    with open(opts.json, 'w') as f:
        json.dump(figures, f, indent=1)
    print('figures written to %s' % opts.json)


if __name__ == '__main__':
    try:
        main()
    except BenchError as problem:
        sys.exit('features.py: %s' % problem)
