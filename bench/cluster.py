#!/usr/bin/env python3
"""Cluster benchmark: one real dpd-masterd, N nodes, real ZeroMQ sockets on loopback.

Run it with the test venv's interpreter (it has pyzmq and the project):

    .venv-test/bin/python bench/cluster.py            # everything, about 6 minutes
    .venv-test/bin/python bench/cluster.py --quick    # small sizes, a smoke test

Nodes come in two kinds:

* real: a `dpd-clientd -f` and a `dpd-workerd -f` per node, each in its own temp dir;
* simulated (N = 200, 1000): many nodes in a few processes (`--sim-procs`). Each
  simulated node owns a SUB and a DEALER socket with the options the client sets
  (`dpd.net.client_plans`), and its brain is the client's own policy
  (`dpd.client.ClientPolicy`): the same HELLO/REPORT timers, NOTIFY and epoch rules,
  the same STATE checks (decode, sha256, node match, `parse_process_list`, local
  policy). Its worker file is written with `dpd.workerfile.write` (fsync included
  unless `--no-fsync`). After a write it feeds the policy what a worker would show
  (every process running), so REPORTs carry a realistic process table. It writes
  no client state file and runs no worker.

The master always is the real `dpd-masterd -f` ($DPD_MASTERD, default: the one next
to this interpreter); clients and workers come from $DPD_CLIENTD and $DPD_WORKERD
(same default). Endpoints are tcp://127.0.0.1 on two free ports below the kernel's
ephemeral range (so no reconnecting node can get the master's port as its own
source port while the master is down: a TCP self-connect). TCP, not ipc://, because
deployments use TCP and its listen backlog is what 1000 nodes reconnecting at
once meet after a master restart.

How each figure is measured (times from CLOCK_MONOTONIC, shared by all processes):

1. "master file saved -> every node's worker file updated": every node's list in
   the master file is changed (real nodes: one `sleep` added to each; simulated: an
   env value changed in every process) and the file replaced by rename. The clock
   starts just before the rename. Real nodes: inotify on each node's directory
   sees the rename of its worker file, whose `_diprocd` record then holds the new
   sha256. Simulated: the node's time right after `workerfile.write` returned.
   The figure is the time of the last node; median and p95 over `--repeat` edits.
2. "master file saved -> process running" (one real node, the others idle): one
   `sleep` with a unique argument added to that node's list; the clock stops when
   a child of its worker has exec'd it (its /proc cmdline), polled every 1 ms.
3. "client started late -> worker file written": master up; the node's worker file
   reset to {"procs": []}; a real dpd-clientd is started; clock from just before
   exec (and, second row, from its sd_notify READY=1) until inotify sees the worker
   file with the node's list. The client is stopped between runs.
4. "master killed and restarted": SIGKILL, reaped, restarted at once with the same
   file. Clock from the SIGKILL until every node has been confirmed in sync under the
   new epoch: at the nodes, the first ACK (or STATE equal to what it holds) carrying
   the new epoch; and, second row, the master's own state file listing every node
   `in-sync` (read every 25 ms). "No process restarted": simulated nodes wrote no
   worker file during the restart; real nodes: every worker child keeps its pid.
5. "master CPU / RSS, idle nodes": after a settle, the master's utime+stime (all
   threads, /proc/PID/stat) over `--window` seconds (default 30) while nodes send
   REPORTs every 10 s +-20 % and the master sends HUGZ every 2 s; RSS is VmRSS at
   the end of the window; the peak (VmHWM) is in the JSON.

Output: a markdown table on stdout, everything else (samples, counters, CPU of
the simulators, versions, load average) in the JSON (--json, default
results-raw/cluster.json). Every wait has a deadline; every process started is
stopped (SIGTERM, then SIGKILL by pid), also on Ctrl-C.
"""
import argparse
import ctypes
import heapq
import json
import math
import os
import platform
import random
import resource
import select
import selectors
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, deque

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import zmq  # noqa: E402

from dpd import inotify, jsonfile  # noqa: E402
from dpd.cluster import actions as act  # noqa: E402
from dpd.cluster import events as ev  # noqa: E402
from dpd.cluster import protocol, workerfile  # noqa: E402
from dpd.cluster import sockets as net  # noqa: E402
from dpd.cluster.client import ClientPolicy  # noqa: E402
from dpd.cluster.config import ClientConfig, load_master  # noqa: E402

mono = time.monotonic
TICK = os.sysconf('SC_CLK_TCK')
SLEEP = shutil.which('sleep') or '/bin/sleep'
TARGETS = {'fanout_200': 0.3, 'fanout_1000': 1.0, 'to_running': 0.1, 'late_client': 0.1,
           'restart': 3.0, 'cpu_pct': 5.0, 'rss_mib': 100.0}


class BenchError(Exception):
    pass


# ====================================================================== small helpers

def quantiles(samples):
    """(median, p95) by nearest rank; (None, None) when empty."""
    if not samples:
        return None, None
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def loadavg():
    with open('/proc/loadavg') as f:
        return [float(x) for x in f.read().split()[:3]]


def free_ports(count, rng):
    """Ports that bind now, below the ephemeral range (see the module docstring)."""
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


def write_atomically(path, doc, mode=0o644):
    """Temp file in the same directory, then rename; returns the time just before
    the rename: the moment the file counts as saved."""
    tmp = '%s.bench.tmp' % path
    with open(tmp, 'w') as f:
        json.dump(doc, f, indent=1)
    os.chmod(tmp, mode)
    saved = mono()
    os.rename(tmp, path)
    return saved


def read_json(path):
    try:
        with open(path, 'rb') as f:
            return json.loads(f.read())
    except (OSError, ValueError):
        return None


def proc_cpu_seconds(pid):
    """utime + stime of every thread of `pid`, in seconds."""
    with open('/proc/%d/stat' % pid, 'rb') as f:
        fields = f.read().rsplit(b')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def thread_cpu_seconds(pid):
    """{thread group: CPU seconds}: the main thread, libzmq's own threads (ZMQbg/...),
    and the other Python threads together."""
    groups = Counter()
    for tid in os.listdir('/proc/%d/task' % pid):
        try:
            with open('/proc/%d/task/%s/comm' % (pid, tid)) as f:
                comm = f.read().strip()
            with open('/proc/%d/task/%s/stat' % (pid, tid), 'rb') as f:
                fields = f.read().rsplit(b')', 1)[1].split()
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
            try:
                with open('/proc/%d/cmdline' % child, 'rb') as f:
                    found[child] = f.read().split(b'\0')[:-1]
            except OSError:
                pass
    return found


def command_of(env_name, program):
    """The command line of one of our daemons: $ENV_NAME, else next to this python."""
    if os.environ.get(env_name):
        return shlex.split(os.environ[env_name])
    return [os.path.join(os.path.dirname(sys.executable), program)]


# ====================================================================== the node lists

def node_list(node, rev, count):
    """A node's list in the master file: `count` processes (~230 bytes each),
    `rev` in every env, so a new rev changes every process of every node."""
    return [{'name': 'svc%d' % i, 'run': '/usr/bin/svc%d' % i,
             'args': ['--port', str(8000 + i), '--node', node, '--threads', '4'],
             'user': 'svc', 'env': {'MODE': 'prod', 'REV': str(rev), 'REGION': 'eu-1'},
             'logs': '/var/log/svc/svc%d.log' % i, 'restart': True}
            for i in range(count)]


def sha_of(entries):
    """The sha256 the master will publish for `entries` (it parses the file back)."""
    return protocol.body_of(json.loads(json.dumps(entries)))[1]


def sleep_proc(name, marker):
    return {'name': name, 'run': SLEEP, 'args': [marker], 'user': 'nobody'}


# ====================================================================== processes

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
        for pid in children_of(os.getpid()):   # orphans re-parented to us (subreaper)
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


class NotifySocket:
    """A NOTIFY_SOCKET of our own: the exact moment a daemon says READY=1."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.sock.bind(path)
        self.sock.setblocking(False)

    def env(self):
        return dict(os.environ, NOTIFY_SOCKET=self.path)

    def ready_at(self):
        """The time a READY=1 was received now, else None (non-blocking)."""
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                return None
            if b'READY=1' in data.split(b'\n'):
                return mono()

    def wait_ready(self, proc, timeout, what):
        deadline = mono() + timeout
        while mono() < deadline:
            if proc.poll() is not None:
                raise BenchError('%s exited (%s) before it was ready' % (what, proc.returncode))
            ready = self._wait(min(0.05, deadline - mono()))
            if ready is not None:
                return ready
        raise BenchError('%s not ready within %g s' % (what, timeout))

    def _wait(self, timeout):
        select.select([self.sock], [], [], max(0.0, timeout))
        return self.ready_at()

    def close(self):
        self.sock.close()


class FileEvents:
    """inotify on directories: the moment a file is renamed (or written) into place."""

    def __init__(self):
        self.fd = inotify.init()
        self.keys = {}

    def watch(self, directory, key):
        wd = inotify.add_watch(self.fd, directory, inotify.IN_MOVED_TO | inotify.IN_CLOSE_WRITE)
        self.keys[wd] = key

    def wait(self, timeout):
        """[(key, file name, time seen)] of the events within `timeout` seconds."""
        ready, _, _ = select.select([self.fd], [], [], max(0.0, timeout))
        if not ready:
            return []
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return []
        seen = mono()
        return [(self.keys.get(wd), name, seen) for wd, _, name in inotify.parse(data)]

    def close(self):
        os.close(self.fd)


# ====================================================================== the master

class Master:
    def __init__(self, workdir, procs, opts, rng):
        self.dir = os.path.join(workdir, 'master')
        os.mkdir(self.dir, 0o700)
        self.procs, self.opts = procs, opts
        self.config = os.path.join(self.dir, 'master.json')
        self.state_path = os.path.join(self.dir, 'master.state.json')
        stats, updates = free_ports(2, rng)
        self.stats = 'tcp://127.0.0.1:%d' % stats
        self.updates = 'tcp://127.0.0.1:%d' % updates
        self.proc = None
        self.starts = 0

    def save(self, nodes):
        """Replace the master file; the time it counts as saved."""
        return write_atomically(self.config, {'master_stats': self.stats,
                                              'master_updates': self.updates, 'nodes': nodes})

    def argv(self):
        argv = command_of('DPD_MASTERD', 'dpd-masterd') + ['-f', self.config]
        if self.opts.profile_master:
            argv = [sys.executable, '-c', PROFILE_WRAPPER] + argv[1:]
        return argv

    def start(self, timeout=60.0):
        """(time exec'd, time it said READY=1)."""
        self.starts += 1
        notify = NotifySocket(os.path.join(self.dir, 'notify.%d' % self.starts))
        env = notify.env()
        if self.opts.profile_master:
            env['DPD_BENCH_PROFILE'] = os.path.join(
                os.path.abspath(self.opts.profile_master), 'master')
        try:
            started = mono()
            self.proc = self.procs.start(self.argv(), os.path.join(self.dir, 'master.log'), env)
            return started, notify.wait_ready(self.proc, timeout, 'dpd-masterd')
        finally:
            notify.close()

    def kill9(self):
        killed = mono()
        self.procs.kill9(self.proc)
        return killed

    def stop(self):
        if self.proc is not None:
            self.procs.stop(self.proc)

    def state(self):
        """(epoch, {node: state}) from the master's state file."""
        doc = read_json(self.state_path) or {}
        return doc.get('epoch'), {n.get('node'): n.get('state') for n in doc.get('nodes', [])}

    def all_in_sync(self, names):
        epoch, states = self.state()
        return epoch, all(states.get(name) == 'in-sync' for name in names)

    def wait_in_sync(self, names, timeout, not_epoch=None, interval=0.025):
        """The time the state file first lists every node in `names` in-sync (under an
        epoch other than `not_epoch`)."""
        deadline = mono() + timeout
        while mono() < deadline:
            epoch, ok = self.all_in_sync(names)
            if ok and epoch is not None and epoch != not_epoch:
                return mono()
            time.sleep(interval)
        _, states = self.state()
        raise BenchError('master state: %s (of %d nodes) after %g s' % (
            dict(Counter(states.get(n) for n in names)), len(names), timeout))


# The master under cProfile (--profile-master DIR): its main thread and its zmq
# thread, one .prof file each, written when it exits on SIGTERM.
PROFILE_WRAPPER = r'''
import cProfile, os, sys
from dpd.cluster import link as zmqlink, masterd
out, profiles = os.environ['DPD_BENCH_PROFILE'], []
original_run = zmqlink.ZmqLink.run
def run(self):
    profile = cProfile.Profile(); profiles.append(('zmq', profile)); profile.enable()
    try:
        original_run(self)
    finally:
        profile.disable()
zmqlink.ZmqLink.run = run
main = cProfile.Profile(); profiles.append(('main', main))
sys.argv[0] = 'dpd-masterd'
main.enable()
try:
    masterd.main(sys.argv[1:])
finally:
    main.disable()
    for name, profile in profiles:
        profile.dump_stats('%s.%d.%s.prof' % (out, os.getpid(), name))
'''


# ====================================================================== real nodes

class RealNode:
    """A node of real daemons: dpd-clientd and (optionally) dpd-workerd."""

    def __init__(self, workdir, name, master, procs):
        self.name, self.procs = name, procs
        self.dir = os.path.join(workdir, name)
        os.mkdir(self.dir, 0o700)
        self.worker_conf = os.path.join(self.dir, 'worker.json')
        self.client_conf = os.path.join(self.dir, 'client.json')
        self.reset_worker_file()
        write_atomically(self.client_conf, {
            'master_stats': master.stats, 'master_updates': master.updates,
            'node_name': name, 'conf_file': self.worker_conf})
        self.worker = self.client = None
        self.starts = 0

    def reset_worker_file(self):
        write_atomically(self.worker_conf, {'procs': []}, mode=0o600)

    def _start(self, program, env_name, config):
        self.starts += 1
        notify = NotifySocket(os.path.join(self.dir, 'notify.%d' % self.starts))
        try:
            started = mono()
            proc = self.procs.start(command_of(env_name, program) + ['-f', config],
                                    os.path.join(self.dir, program + '.log'), notify.env())
            return proc, started, notify.wait_ready(proc, 30, '%s of %s' % (program, self.name))
        finally:
            notify.close()

    def start_worker(self):
        self.worker, _, _ = self._start('dpd-workerd', 'DPD_WORKERD', self.worker_conf)

    def start_client(self):
        """(time exec'd, time READY=1)."""
        self.client, started, ready = self._start('dpd-clientd', 'DPD_CLIENTD',
                                                  self.client_conf)
        return started, ready

    def stop_client(self):
        self.procs.stop(self.client)
        self.client = None

    def held_sha(self):
        """The sha256 the worker file's record claims, if its procs still match it."""
        doc = read_json(self.worker_conf)
        if not isinstance(doc, dict) or not isinstance(doc.get('procs'), list):
            return None
        record = doc.get(workerfile.RECORD_KEY) or {}
        sha = protocol.body_of(doc['procs'])[1]
        return sha if record.get('sha256') == sha else None

    def running(self):
        """{pid: argv} of the worker's children."""
        return children_of(self.worker.pid) if self.worker else {}


def wait_files(events, expected, deadline):
    """{node: time its worker file held the expected sha}; `expected`: {RealNode: sha}."""
    pending, done = dict(expected), {}
    for node in list(pending):         # already there (a write before we looked)
        if node.held_sha() == pending[node]:
            done[node] = mono()
            del pending[node]
    while pending and mono() < deadline:
        for node, name, seen in events.wait(deadline - mono()):
            if node in pending and name == 'worker.json' and node.held_sha() == pending[node]:
                done[node] = seen
                del pending[node]
    if pending:
        raise BenchError('worker files of %s not updated in time'
                         % ', '.join(n.name for n in pending))
    return done


# ====================================================================== simulated nodes:
# ---------------------------------------------------------------------- the child side

class SimNode:
    """One simulated node: two sockets and the real client's policy."""

    def __init__(self, child, index, name, conf_file, endpoints):
        self.child, self.index, self.name, self.conf_file = child, index, name, conf_file
        config = ClientConfig(path=conf_file + '.client.json', master_stats=endpoints[0],
                              master_updates=endpoints[1], node_name=name, conf_file=conf_file)
        self.plans = net.client_plans(config, name, None)
        self.policy = ClientPolicy(config, name, os.urandom(8).hex(),
                                   rng=random.Random(hash(name)))
        self.sockets = {}
        self.scheduled = None
        self.wrote = False
        self.applied_at = None        # when the last worker file write returned
        self.confirmed = {}           # epoch -> first ACK/STATE for what it holds
        self.received_at = {}         # message type -> when the last one arrived
        self.breakdown = None         # (NOTIFY, STATE) arrival times before the last write
        self.counts = Counter()

    # sockets
    def open(self):
        for plan in self.plans:
            sock = self.child.ctx.socket(plan.kind)
            sock.linger = 0
            for option, value in plan.options:
                sock.setsockopt(option, value)
            for topic in plan.subscribe:
                sock.setsockopt(zmq.SUBSCRIBE, topic)
            sock.connect(plan.endpoint)
            self.sockets[plan.name] = sock
            self.child.register(sock, self, plan.name)

    def close(self):
        for sock in self.sockets.values():
            self.child.unregister(sock)
            sock.close(0)
        self.sockets.clear()

    # the policy
    def start(self, now):
        workerfile.default_conf(self.conf_file)
        self.open()
        self.feed(workerfile.observe(self.conf_file), now)

    def on_message(self, socket_name, frames, now):
        kind = bytes(frames[0] if socket_name == 'stats' or len(frames) < 2 else frames[1])[:16]
        self.counts['recv:' + kind.decode('ascii', 'replace')] += 1
        self.received_at[kind] = now
        self.feed(ev.LinkMessage(socket_name, tuple(frames)), now)
        if kind in (b'ACK', b'STATE'):
            self._note_confirmation(frames[1], now)

    def _note_confirmation(self, header, now):
        try:
            fields = jsonfile.loads(header)
        except ValueError:
            return
        held = (self.policy.applied or {}).get('sha256')
        if held is not None and fields.get('sha256') == held and \
                fields.get('epoch') not in self.confirmed:
            self.confirmed[fields.get('epoch')] = now
            self.child.changed(self)

    def feed(self, event, now):
        pending = deque([event])
        for _ in range(3):
            while pending:
                for action in self.policy.handle(pending.popleft(), now):
                    pending.extend(self.perform(action))
            deadline = self.policy.next_deadline()
            if deadline is None or deadline > now:
                break
            pending.append(ev.Tick())           # due now: what the controller does
        self.policy.dirty = False               # no client state file is simulated
        self.child.schedule(self)
        if self.wrote:
            self.wrote = False
            self.child.changed(self)

    def perform(self, action):
        kind = type(action)
        if kind is act.Send:
            return self._send(action)
        if kind is act.WriteWorkerFile:
            return self._write(action)
        if kind is act.RebuildLink:
            self.counts['rebuilds'] += 1
            self.close()
            self.open()
            return [ev.LinkEvent('*', 'rebuilt', '')]
        return ()                                # logs, state snapshots, sd_notify

    def _send(self, action):
        self.counts['send:' + action.frames[0].decode()] += 1
        try:
            self.sockets[action.socket].send_multipart(action.frames, zmq.NOBLOCK)
        except zmq.ZMQError:
            self.counts['send-dropped'] += 1
        return ()

    def _write(self, action):
        started = time.perf_counter()
        try:
            workerfile.write(self.conf_file, action.entries, action.record)
        except workerfile.Refused as err:
            self.counts['write-refused'] += 1
            return [ev.WorkerFileRefused(str(err))]
        self.applied_at = mono()
        self.breakdown = (self.received_at.get(b'NOTIFY'), self.received_at.get(b'STATE'))
        self.counts['writes'] += 1
        self.child.write_seconds += time.perf_counter() - started
        self.wrote = True       # waits are checked once the policy knows (see feed)
        applied = {'gen': action.record['gen'], 'sha256': action.record['sha256']}
        return [ev.WorkerFileWritten(applied['gen'], applied['sha256']),
                _worker_shows(applied, action.entries)]


def _worker_shows(applied, entries):
    """What a worker's state file would say right after it loaded `entries`."""
    since = round(time.time(), 3)
    return ev.WorkerObserved(
        applied=applied,
        worker={'running': True, 'pid': 4242, 'config_ok': True, 'errors': []},
        processes=tuple({'name': e['name'], 'state': 'running', 'pid': 10000 + i,
                         'restarts': 0, 'since': since, 'error': None, 'last_exit': None,
                         'next_start': None} for i, e in enumerate(entries)))


class Wait:
    """A condition over every node of a child, answered as soon as it holds."""

    def __init__(self, request, nodes):
        self.id, self.what = request['id'], request['what']
        self.request = request
        self.want = {}
        if self.what == 'rev':
            self.want = {n.name: sha_of(node_list(n.name, request['rev'], request['procs']))
                         for n in nodes}
        self.times, self.steps = {}, {}
        self.pending = set()
        for node in nodes:
            self.check(node)
            if node.name not in self.times:
                self.pending.add(node.name)

    def check(self, node):
        """Record `node` as done if it is; True when it is."""
        if self.what == 'rev':
            done = (node.policy.applied or {}).get('sha256') == self.want[node.name]
            when = node.applied_at
        else:   # 'confirmed': under an epoch other than 'not_epoch', after 'after'
            times = [t for e, t in node.confirmed.items()
                     if e != self.request['not_epoch'] and t > self.request['after']]
            done, when = bool(times), min(times) if times else None
        if done:
            self.times[node.name] = when
            if self.what == 'rev':
                self.steps[node.name] = node.breakdown
            self.pending.discard(node.name)
        return done


class SimChild:
    """A process holding many simulated nodes; commands on stdin, answers on stdout."""

    def __init__(self, cfg):
        self.ctx = zmq.Context(io_threads=cfg.get('io_threads', 1))
        self.ctx.set(zmq.MAX_SOCKETS, 2 * len(cfg['nodes']) + 64)
        self.poller = zmq.Poller()
        self.owners = {}
        self.heap = []
        self.waits = {}
        self.write_seconds = 0.0
        self.inbox = b''
        endpoints = (cfg['master_stats'], cfg['master_updates'])
        self.nodes = [SimNode(self, i, name, os.path.join(cfg['dir'], name, 'worker.json'),
                              endpoints) for i, name in enumerate(cfg['nodes'])]
        for node in self.nodes:
            os.makedirs(os.path.dirname(node.conf_file), 0o700, exist_ok=True)

    def register(self, sock, node, name):
        self.poller.register(sock, zmq.POLLIN)
        self.owners[sock] = (node, name)

    def unregister(self, sock):
        self.poller.unregister(sock)
        self.owners.pop(sock, None)

    def schedule(self, node):
        deadline = node.policy.next_deadline()
        if deadline is not None and deadline != node.scheduled:
            node.scheduled = deadline
            heapq.heappush(self.heap, (deadline, node.index))

    def changed(self, node):
        for wait in list(self.waits.values()):
            if node.name in wait.pending and wait.check(node) and not wait.pending:
                self.answer(wait)

    def answer(self, wait):
        del self.waits[wait.id]
        self.say({'id': wait.id, 'times': wait.times, 'steps': wait.steps})

    @staticmethod
    def say(doc):
        sys.stdout.write(json.dumps(doc) + '\n')
        sys.stdout.flush()

    def run(self):
        now = mono()
        for node in self.nodes:
            node.start(now)
        self.poller.register(0, zmq.POLLIN)
        while True:
            timeout = 100.0
            if self.heap:
                timeout = min(timeout, max(0.0, (self.heap[0][0] - mono()) * 1000))
            for sock, _ in self.poller.poll(timeout):
                if sock == 0:
                    if not self.read_commands():
                        return
                else:
                    self.drain(sock)
            self.run_timers()

    def drain(self, sock):
        node, name = self.owners.get(sock, (None, None))
        for _ in range(64):
            if node is None or sock.closed:
                return
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            node.on_message(name, frames, mono())

    def run_timers(self):
        now = mono()
        while self.heap and self.heap[0][0] <= now:
            deadline, index = heapq.heappop(self.heap)
            node = self.nodes[index]
            if node.scheduled == deadline:
                node.scheduled = None
                node.feed(ev.Tick(), now)

    def read_commands(self):
        data = os.read(0, 1 << 20)
        if not data:
            return False
        self.inbox += data
        while b'\n' in self.inbox:
            line, self.inbox = self.inbox.split(b'\n', 1)
            if not self.command(json.loads(line)):
                return False
        return True

    def command(self, request):
        cmd = request['cmd']
        if cmd == 'quit':
            return False
        if cmd == 'wait':
            wait = Wait(request, self.nodes)
            self.waits[wait.id] = wait
            if not wait.pending:
                self.answer(wait)
        elif cmd == 'cancel':
            self.waits.pop(request['id'], None)
        elif cmd == 'fsync':
            FSYNC[0] = bool(request['on'])
            self.say({'id': request['id']})
        elif cmd == 'stats':
            self.say({'id': request['id'], 'stats': self.stats()})
        return True

    def stats(self):
        counts = Counter()
        for node in self.nodes:
            counts.update(node.counts)
        times = os.times()
        return {'counts': dict(counts), 'cpu_s': times.user + times.system,
                'write_s': self.write_seconds, 'nodes': len(self.nodes),
                'status': dict(Counter(n.policy.status for n in self.nodes))}


def sim_child_main(config_path):
    with open(config_path) as f:
        cfg = json.load(f)
    raise_nofile()
    signal.signal(signal.SIGINT, signal.SIG_IGN)     # the parent stops us
    original = jsonfile.replace_file
    jsonfile.replace_file = lambda path, data, mode=0o644, durable=True: \
        original(path, data, mode, durable=durable and FSYNC[0])
    FSYNC[0] = cfg['fsync']
    child = SimChild(cfg)
    profile = None
    if cfg.get('profile'):
        import cProfile
        profile = cProfile.Profile()
        profile.enable()
    try:
        child.run()
    finally:
        if profile is not None:
            profile.disable()
            profile.dump_stats(cfg['profile'])
        for node in child.nodes:
            node.close()
        child.ctx.term()


FSYNC = [True]      # the simulated nodes' worker file writes fsync (switched by 'fsync')


# ---------------------------------------------------------------------- the parent side

class Fleet:
    """Simulated nodes spread over `procs` child processes."""

    def __init__(self, workdir, names, master, procs, opts):
        self.dir = os.path.join(workdir, 'sim')
        os.mkdir(self.dir, 0o700)
        self.names, self.master, self.procs, self.opts = names, master, procs, opts
        self.children = []
        self.next_id = 0

    def start(self, count):
        for k in range(count):
            cfg = {'nodes': self.names[k::count], 'dir': self.dir, 'fsync': True,
                   'master_stats': self.master.stats, 'master_updates': self.master.updates}
            if self.opts.profile_sims:
                cfg['profile'] = os.path.join(os.path.abspath(self.opts.profile_sims),
                                              'sim%d.child%d.prof' % (len(self.names), k))
            path = os.path.join(self.dir, 'child%d.json' % k)
            with open(path, 'w') as f:
                json.dump(cfg, f)
            proc = self.procs.start([sys.executable, os.path.abspath(__file__), '--sim-child',
                                     path], os.path.join(self.dir, 'child%d.log' % k),
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            os.set_blocking(proc.stdout.fileno(), False)
            self.children.append({'proc': proc, 'buffer': b''})

    def ask(self, request, timeout):
        """Send `request` to every child; their answers, or BenchError at the deadline."""
        self.next_id += 1
        request = dict(request, id=self.next_id)
        for child in self.children:
            child['proc'].stdin.write((json.dumps(request) + '\n').encode())
            child['proc'].stdin.flush()
        answers = self._collect(self.next_id, mono() + timeout)
        if answers is None:
            for child in self.children:
                child['proc'].stdin.write((json.dumps({'cmd': 'cancel', 'id': self.next_id})
                                           + '\n').encode())
                child['proc'].stdin.flush()
            raise BenchError('simulated nodes: no answer to %s within %g s (%s)'
                             % (request['cmd'] + ' ' + str(request.get('what', '')), timeout,
                                self.summary()))
        return answers

    def _collect(self, wanted, deadline):
        answers = {}
        with selectors.DefaultSelector() as selector:
            for k, child in enumerate(self.children):
                selector.register(child['proc'].stdout, selectors.EVENT_READ, k)
            while len(answers) < len(self.children):
                remaining = deadline - mono()
                if remaining <= 0:
                    return None
                for key, _ in selector.select(remaining):
                    child = self.children[key.data]
                    if child['proc'].poll() is not None:
                        raise BenchError('a simulator exited (%s); see %s/child%d.log'
                                         % (child['proc'].returncode, self.dir, key.data))
                    for answer in self._lines(child):
                        if answer.get('id') == wanted:
                            answers[key.data] = answer
        return [answers[k] for k in sorted(answers)]

    @staticmethod
    def _lines(child):
        try:
            child['buffer'] += os.read(child['proc'].stdout.fileno(), 1 << 20)
        except BlockingIOError:
            pass
        lines = child['buffer'].split(b'\n')
        child['buffer'] = lines.pop()
        return [json.loads(line) for line in lines if line]

    def wait_rev(self, rev, procs_per_node, timeout):
        """({node: time its worker file got the list of `rev`},
        {node: (time its NOTIFY came, time its STATE came)})."""
        times, steps = {}, {}
        for answer in self.ask({'cmd': 'wait', 'what': 'rev', 'rev': rev,
                                'procs': procs_per_node}, timeout):
            times.update(answer['times'])
            steps.update(answer['steps'])
        return times, steps

    def set_fsync(self, on):
        self.ask({'cmd': 'fsync', 'on': on}, 10)

    def wait_confirmed(self, not_epoch, after, timeout):
        """{node: first ACK/STATE for what it holds under a new epoch, after `after`}."""
        times = {}
        for answer in self.ask({'cmd': 'wait', 'what': 'confirmed', 'not_epoch': not_epoch,
                                'after': after}, timeout):
            times.update(answer['times'])
        return times

    def stats(self):
        """Counters summed over the children, with their CPU seconds."""
        total, cpu, write_s, status = Counter(), 0.0, 0.0, Counter()
        for answer in self.ask({'cmd': 'stats'}, 30):
            stats = answer['stats']
            total.update(stats['counts'])
            cpu += stats['cpu_s']
            write_s += stats['write_s']
            status.update(stats['status'])
        return {'counts': dict(total), 'cpu_s': round(cpu, 3), 'write_s': round(write_s, 3),
                'status': dict(status)}

    def summary(self):
        try:
            stats = self.stats()
            return 'status %s' % stats['status']
        except BenchError:
            return 'no stats'

    def stop(self):
        for child in self.children:
            try:
                child['proc'].stdin.write(b'{"cmd": "quit"}\n')
                child['proc'].stdin.close()
            except (BrokenPipeError, ValueError):
                pass
        for child in self.children:
            try:
                child['proc'].wait(10)      # a clean exit (and its profile, if any)
            except subprocess.TimeoutExpired:
                pass
            self.procs.stop(child['proc'])


# ====================================================================== results

class Results:
    def __init__(self):
        self.rows = []
        self.details = {}

    def add(self, metric, n, samples, unit, target=None, key=None, note=''):
        """One table row. `samples`: a list (median and p95 shown) or a single value."""
        many = isinstance(samples, list)
        median, p95 = quantiles(samples) if many else (samples, None)
        verdict = ''
        if target is not None and median is not None:
            verdict = 'pass' if median <= target else 'MISS'
            if verdict == 'pass' and p95 is not None and p95 > target:
                verdict = 'pass (p95 over)'
        self.rows.append({'metric': metric, 'n': n, 'samples': samples if many else None,
                          'value': None if many else samples, 'median': median, 'p95': p95,
                          'unit': unit, 'target': target, 'verdict': verdict, 'key': key,
                          'note': note})

    def table(self):
        lines = ['| metric | N | measured | target | result |', '|---|---:|---:|---:|---|']
        for row in self.rows:
            if row['samples'] is not None:
                measured = '%s / %s %s (median / p95 of %d)' % (
                    _fmt(row['median']), _fmt(row['p95']), row['unit'], len(row['samples']))
            else:
                measured = '%s %s' % (_fmt(row['value']), row['unit'])
            target = '≤ %s %s' % (_fmt(row['target']), row['unit']) if row['target'] is not None \
                else '—'
            note = ' (%s)' % row['note'] if row['note'] else ''
            lines.append('| %s%s | %s | %s | %s | %s |' % (row['metric'], note, row['n'],
                                                           measured, target, row['verdict']))
        return '\n'.join(lines)


def _fmt(value):
    if value is None:
        return '—'
    if isinstance(value, str):
        return value
    if value >= 100:
        return '%.0f' % value
    if value >= 10:
        return '%.1f' % value
    return '%.3g' % value


def ms(seconds):
    return round(seconds * 1000, 1)


# ====================================================================== the runs: real nodes

def run_real(opts, results, workdir, procs, rng):
    """N real nodes (client + worker), one late client, one master."""
    count = opts.real
    master = Master(workdir, procs, opts, rng)
    names = ['n%d' % i for i in range(1, count + 1)]
    lists = {name: [sleep_proc('base', '%d.%d' % (700000 + i, opts.run_id))]
             for i, name in enumerate(names)}
    late_list = [sleep_proc('late', '%d.%d' % (600000, opts.run_id))]
    master.save(dict(lists, late=late_list))
    master.start()
    nodes = [RealNode(workdir, name, master, procs) for name in names]
    late = RealNode(workdir, 'late', master, procs)
    events = FileEvents()
    for node in nodes + [late]:
        events.watch(node.dir, node)
    try:
        for node in nodes:
            node.start_worker()
            node.start_client()
        wait_files(events, {n: sha_of(lists[n.name]) for n in nodes}, mono() + 30)
        time.sleep(1.5)
        real_fanout(opts, results, master, nodes, lists, late_list, events, rng)
        real_to_running(opts, results, master, nodes, lists, late_list, events, rng)
        real_late_client(opts, results, late, late_list, events, rng)
        real_restart(opts, results, master, nodes)
    finally:
        events.close()
        for node in nodes + [late]:
            for proc in (node.client, node.worker):
                if proc is not None:
                    procs.stop(proc)
        master.stop()


def real_fanout(opts, results, master, nodes, lists, late_list, events, rng):
    """Figure 1 with real nodes: a `sleep` added to every node's list."""
    samples = []
    for rep in range(opts.repeat):
        for i, node in enumerate(nodes):
            lists[node.name].append(sleep_proc('f%d' % rep, '%d.%d' % (710000 + 100 * rep + i,
                                                                      opts.run_id)))
        saved = master.save(dict(lists, late=late_list))
        done = wait_files(events, {n: sha_of(lists[n.name]) for n in nodes}, saved + 20)
        samples.append(max(done.values()) - saved)
        time.sleep(opts.settle + rng.random() * 0.5)
    results.add('master file saved → every node\'s worker file updated', '%d real' % len(nodes),
                [ms(s) for s in samples], 'ms', note='real dpd-clientd')
    results.details['real_fanout_s'] = samples


def real_to_running(opts, results, master, nodes, lists, late_list, events, rng):
    """Figure 2: one process added to one node; until its worker has exec'd it."""
    node = nodes[0]
    to_file, to_running = [], []
    for rep in range(opts.repeat):
        marker = '%d.%d' % (800000 + rep, opts.run_id)
        lists[node.name].append(sleep_proc('e%d' % rep, marker))
        expected = sha_of(lists[node.name])
        saved = master.save(dict(lists, late=late_list))
        file_at = run_at = None
        deadline = saved + 20
        while run_at is None and mono() < deadline:
            for key, name, seen in events.wait(0.001):
                if key is node and name == 'worker.json' and file_at is None and \
                        node.held_sha() == expected:
                    file_at = seen
            if any(argv[1:] == [marker.encode()] for argv in node.running().values()):
                run_at = mono()
        if run_at is None:
            raise BenchError('process %s not running on %s within 20 s' % (marker, node.name))
        to_running.append(run_at - saved)
        to_file.append((file_at or run_at) - saved)
        time.sleep(opts.settle + rng.random() * 0.5)
    results.add('master file saved → process running on one node', '1 of %d real' % len(nodes),
                [ms(s) for s in to_running], 'ms', TARGETS['to_running'] * 1000,
                key='to_running', note='real dpd-clientd + dpd-workerd')
    results.add('… of which: saved → its worker file written', '1 of %d real' % len(nodes),
                [ms(s) for s in to_file], 'ms')
    results.details['to_running_s'] = to_running
    results.details['to_running_file_s'] = to_file


def real_late_client(opts, results, late, late_list, events, rng):
    """Figure 3: a client started while the master is up, until its worker file is written."""
    expected = sha_of(late_list)
    from_exec, from_ready = [], []
    for _ in range(opts.repeat):
        late.reset_worker_file()
        started, ready = late.start_client()
        done = wait_files(events, {late: expected}, started + 20)
        from_exec.append(done[late] - started)
        from_ready.append(done[late] - ready)
        late.stop_client()
        time.sleep(opts.settle + rng.random() * 0.5)
    results.add('client started late → worker file written, from exec', 1,
                [ms(s) for s in from_exec], 'ms', TARGETS['late_client'] * 1000,
                key='late_client', note='real dpd-clientd')
    results.add('… same, from the client\'s READY=1', 1, [ms(s) for s in from_ready], 'ms',
                TARGETS['late_client'] * 1000, key='late_client_ready')
    results.details['late_client_from_exec_s'] = from_exec
    results.details['late_client_from_ready_s'] = from_ready


def real_restart(opts, results, master, nodes):
    """Figure 4 with real nodes: SIGKILL + restart; every worker child keeps its pid."""
    names = [n.name for n in nodes]
    samples, same_pids = [], True
    for _ in range(max(1, opts.restarts)):
        epoch, ok = master.all_in_sync(names)
        if not ok:
            master.wait_in_sync(names, 30)
            epoch, _ = master.all_in_sync(names)
        before = {n.name: sorted(n.running()) for n in nodes}
        killed = master.kill9()
        master.start()
        synced = master.wait_in_sync(names, 30, not_epoch=epoch)
        samples.append(synced - killed)
        after = {n.name: sorted(n.running()) for n in nodes}
        same_pids = same_pids and after == before
    results.add('master SIGKILL + restart → all nodes in-sync (master state file)',
                '%d real' % len(nodes), [ms(s) for s in samples], 'ms')
    results.add('… processes restarted meanwhile', '%d real' % len(nodes),
                'none' if same_pids else 'SOME', '', note='worker children keep their pids')
    results.details['real_restart_s'] = samples
    results.details['real_restart_same_pids'] = same_pids


# ====================================================================== the runs: simulated

def run_sim(n, opts, results, workdir, procs, rng):
    """N simulated nodes, one master: cold join, figure 1, figure 5, figure 4."""
    workdir = os.path.join(workdir, 'sim%d' % n)
    os.mkdir(workdir, 0o700)
    master = Master(workdir, procs, opts, rng)
    names = ['sim%04d' % i for i in range(n)]
    ppn = opts.procs_per_node
    master.save({name: node_list(name, 0, ppn) for name in names})
    details = results.details.setdefault('sim%d' % n, {})
    details['master_load_s'] = time_master_load(master.config)
    details['body_bytes'] = len(protocol.body_of(json.loads(json.dumps(
        node_list(names[0], 0, ppn))))[0])
    master.start()
    fleet = Fleet(workdir, names, master, procs, opts)
    # real nodes each have their own CPU: spread the simulated ones over every core
    sim_procs = opts.sim_procs or max(os.cpu_count() or 1, math.ceil(n / 250))
    details['sim_procs'] = sim_procs
    try:
        started = mono()
        fleet.start(sim_procs)
        times, _ = fleet.wait_rev(0, ppn, 120)
        details['cold_join_s'] = max(times.values()) - started
        results.add('cold: all simulators started → every worker file written', '%d sim' % n,
                    ms(details['cold_join_s']), 'ms', note='%d sim processes' % sim_procs)
        master.wait_in_sync(names, 60)
        time.sleep(opts.settle)
        rev = 0
        for fsync in opts.fsync_modes:
            fleet.set_fsync(fsync)
            rev = sim_fanout(n, opts, results, master, fleet, names, details, rng, rev, fsync)
        fleet.set_fsync(True)
        sim_idle(n, opts, results, master, fleet, details)
        sim_restart(n, opts, results, master, fleet, names, details)
        details['master_rss_end_mib'], details['master_hwm_mib'] = proc_memory_mib(
            master.proc.pid)
        details['fleet_end'] = fleet.stats()
    finally:
        fleet.stop()
        master.stop()


def time_master_load(path):
    """How long the master's own loader takes on this file (parse + validate), here."""
    started = time.perf_counter()
    load_master(path)
    return round(time.perf_counter() - started, 4)


def sim_fanout(n, opts, results, master, fleet, names, details, rng, rev, fsync):
    """Figure 1, simulated: every node's list changes in one save. Returns the last rev."""
    samples, per_node_median, master_cpu, sim_cpu, write_s = [], [], [], [], []
    last_notify, last_state = [], []
    for rep in range(rev + 1, rev + opts.repeat + 1):
        cpu_before, fleet_before = proc_cpu_seconds(master.proc.pid), fleet.stats()
        saved = master.save({name: node_list(name, rep, opts.procs_per_node)
                             for name in names})
        times, steps = fleet.wait_rev(rep, opts.procs_per_node, 60)
        samples.append(max(times.values()) - saved)
        last_notify.append(max(s[0] for s in steps.values() if s[0]) - saved)
        last_state.append(max(s[1] for s in steps.values() if s[1]) - saved)
        per_node_median.append(statistics.median(times.values()) - saved)
        master_cpu.append(proc_cpu_seconds(master.proc.pid) - cpu_before)
        fleet_after = fleet.stats()
        sim_cpu.append(fleet_after['cpu_s'] - fleet_before['cpu_s'])
        write_s.append(fleet_after['write_s'] - fleet_before['write_s'])
        time.sleep(opts.settle + rng.random() * 0.5)
    target = TARGETS['fanout_1000'] if n >= 1000 else TARGETS['fanout_200']
    mode = 'fsync' if fsync else 'no fsync'
    results.add('master file saved → every node\'s worker file updated', '%d sim' % n,
                [ms(s) for s in samples], 'ms', target * 1000,
                key='fanout_%d%s' % (n, '' if fsync else '_nofsync'), note=mode)
    details.setdefault('fanout', {})[mode] = {
        'last_node_s': samples, 'median_node_s': per_node_median, 'master_cpu_s': master_cpu,
        'last_notify_received_s': last_notify, 'last_state_received_s': last_state,
        'sim_cpu_s': sim_cpu, 'sim_write_wall_s': write_s}
    return rep


def sim_idle(n, opts, results, master, fleet, details):
    """Figure 5: the master's CPU and memory while the nodes only heartbeat and report."""
    time.sleep(opts.idle_settle)
    pid = master.proc.pid
    fleet_before, cpu_before, started = fleet.stats(), proc_cpu_seconds(pid), mono()
    threads_before = thread_cpu_seconds(pid)
    time.sleep(opts.window)
    cpu, elapsed = proc_cpu_seconds(pid) - cpu_before, mono() - started
    threads = thread_cpu_seconds(pid)
    threads.subtract(threads_before)
    rss, hwm = proc_memory_mib(pid)
    fleet_after = fleet.stats()
    sent = Counter(fleet_after['counts'])
    sent.subtract(fleet_before['counts'])
    percent = 100 * cpu / elapsed
    results.add('master CPU, idle nodes (HUGZ 2 s, REPORT ~10 s)', '%d sim' % n,
                round(percent, 2), '% of a core', TARGETS['cpu_pct'], key='cpu_%d' % n,
                note='%.0f s window' % elapsed)
    results.add('master RSS, nodes connected', '%d sim' % n, round(rss, 1), 'MiB',
                TARGETS['rss_mib'], key='rss_%d' % n)
    details.update(idle_window_s=round(elapsed, 2), idle_master_cpu_s=round(cpu, 3),
                   idle_master_cpu_pct=round(percent, 2), idle_rss_mib=rss,
                   idle_hwm_mib=hwm,
                   idle_master_threads_pct={k: round(100 * v / elapsed, 2)
                                            for k, v in sorted(threads.items())},
                   idle_sim_cpu_s=round(fleet_after['cpu_s']
                                                          - fleet_before['cpu_s'], 3),
                   idle_messages={k: v for k, v in sent.items() if v})


def sim_restart(n, opts, results, master, fleet, names, details):
    """Figure 4, simulated: SIGKILL + restart; until every node is confirmed again."""
    at_nodes, at_master, writes, states = [], [], [], []
    if not opts.restarts:
        return
    for _ in range(opts.restarts):
        epoch, _ = master.state()
        before = fleet.stats()['counts']
        killed = master.kill9()
        master.start()
        confirmed = fleet.wait_confirmed(epoch, killed, 60)
        at_nodes.append(max(confirmed.values()) - killed)
        at_master.append(master.wait_in_sync(names, 60, not_epoch=epoch) - killed)
        time.sleep(opts.settle)
        after = fleet.stats()['counts']
        writes.append(after.get('writes', 0) - before.get('writes', 0))
        states.append(after.get('recv:STATE', 0) - before.get('recv:STATE', 0))
        time.sleep(opts.settle)
    results.add('master SIGKILL + restart → all nodes confirmed in sync (ACK, new epoch)',
                '%d sim' % n, [ms(s) for s in at_nodes], 'ms', TARGETS['restart'] * 1000,
                key='restart_%d' % n)
    results.add('… same, master state file lists all in-sync', '%d sim' % n,
                [ms(s) for s in at_master], 'ms', TARGETS['restart'] * 1000)
    results.add('… worker files rewritten meanwhile (a restart)', '%d sim' % n, sum(writes),
                'files', 0, key='restart_writes_%d' % n,
                note='%d STATE received' % sum(states))
    details.update(restart_confirmed_s=at_nodes, restart_master_state_s=at_master,
                   restart_writes=writes, restart_states=states)


# ====================================================================== main

def options(argv):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--quick', action='store_true',
                    help='small sizes: 3 real nodes, 50 simulated, 3 repeats, 5 s window')
    ap.add_argument('--nodes', default='200,1000', help='simulated sizes (200,1000)')
    ap.add_argument('--real', type=int, default=5, help='real nodes (5); 0 skips them')
    ap.add_argument('--repeat', type=int, default=10, help='edits / late starts (10)')
    ap.add_argument('--restarts', type=int, default=3, help='master restarts (3)')
    ap.add_argument('--window', type=float, default=30.0, help='idle CPU window, s (30)')
    ap.add_argument('--idle-settle', type=float, default=12.0,
                    help='quiet time before the idle window, s (12)')
    ap.add_argument('--settle', type=float, default=1.5, help='pause between runs, s (1.5)')
    ap.add_argument('--procs-per-node', type=int, default=4,
                    help='processes in each simulated node\'s list (4, ~1 KiB body)')
    ap.add_argument('--sim-procs', type=int, default=0,
                    help='processes the simulated nodes are spread over '
                         '(0: one per 250 nodes, at least one per CPU)')
    ap.add_argument('--fsync', choices=('on', 'off', 'both'), default='both',
                    help='simulated nodes\' worker file writes: with fsync (as the client), '
                         'without, or both, one after the other (both)')
    ap.add_argument('--profile-master', metavar='DIR',
                    help='run the master under cProfile; .prof files go to DIR')
    ap.add_argument('--profile-sims', metavar='DIR', help='simulators under cProfile')
    ap.add_argument('--seed', type=int, default=1)
    ap.add_argument('--keep', action='store_true', help='keep the temp dir (logs, files)')
    ap.add_argument('--json', default=os.path.join(ROOT, 'results-raw', 'cluster.json'))
    ap.add_argument('--sim-child', metavar='CONFIG', help=argparse.SUPPRESS)
    opts = ap.parse_args(argv)
    if opts.quick:
        opts.nodes, opts.real, opts.repeat, opts.restarts = '50', min(opts.real, 3), 3, 1
        opts.window, opts.idle_settle, opts.settle = 5.0, 2.0, 1.2
    opts.sizes = [int(x) for x in opts.nodes.split(',') if x.strip()]
    opts.fsync_modes = {'on': [True], 'off': [False], 'both': [True, False]}[opts.fsync]
    opts.run_id = random.Random().randrange(100000, 999999)
    for directory in (opts.profile_master, opts.profile_sims):
        if directory:
            os.makedirs(directory, exist_ok=True)
    return opts


def environment(opts, nofile):
    return {'python': platform.python_version(), 'pyzmq': zmq.__version__,
            'libzmq': zmq.zmq_version(), 'cpus': os.cpu_count(), 'kernel': platform.release(),
            'nofile': nofile, 'masterd': command_of('DPD_MASTERD', 'dpd-masterd'),
            'clientd': command_of('DPD_CLIENTD', 'dpd-clientd'),
            'workerd': command_of('DPD_WORKERD', 'dpd-workerd'),
            'transport': 'tcp://127.0.0.1', 'options': {k: v for k, v in vars(opts).items()
                                                          if k != 'sim_child'}}


def on_sigterm(signum, frame):
    raise KeyboardInterrupt


def main(argv=None):
    opts = options(argv)
    if opts.sim_child:
        return sim_child_main(opts.sim_child)
    signal.signal(signal.SIGTERM, on_sigterm)
    nofile = raise_nofile()
    become_subreaper()
    rng = random.Random(opts.seed)
    results, procs = Results(), Processes()
    meta = {'environment': environment(opts, nofile), 'load_before': loadavg(),
            'started': time.strftime('%Y-%m-%d %H:%M:%S')}
    workdir = tempfile.mkdtemp(prefix='dpd-cluster-')
    failed = None
    try:
        if opts.real:
            run_real(opts, results, workdir, procs, rng)
        for n in opts.sizes:
            run_sim(n, opts, results, workdir, procs, rng)
    except BenchError as err:
        failed = str(err)
    except KeyboardInterrupt:
        failed = 'interrupted'
    finally:
        procs.stop_all()
        if not opts.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    meta['load_after'] = loadavg()
    report(opts, results, meta, failed, workdir)
    return 1 if failed else 0


def report(opts, results, meta, failed, workdir):
    print(results.table())
    print()
    print('load average (1/5/15 min) before: %s, after: %s; %d CPUs; python %s, pyzmq %s, '
          'libzmq %s; transport tcp://127.0.0.1' % (
              ' '.join(map(str, meta['load_before'])), ' '.join(map(str, meta['load_after'])),
              meta['environment']['cpus'], meta['environment']['python'],
              meta['environment']['pyzmq'], meta['environment']['libzmq']))
    for n in opts.sizes:
        d = results.details.get('sim%d' % n, {})
        for mode, f in d.get('fanout', {}).items():
            print('sim %d, %s: %d simulator processes; master file load here %.3f s; body %d B;'
                  ' per change (medians): last NOTIFY in %.2f s, last STATE in %.2f s, last '
                  'file %.2f s; master CPU %.2f s, simulators\' CPU %.2f s, simulators\' wall '
                  'time in worker file writes %.2f s' % (
                      n, mode, d['sim_procs'], d['master_load_s'], d['body_bytes'],
                      statistics.median(f['last_notify_received_s']),
                      statistics.median(f['last_state_received_s']),
                      statistics.median(f['last_node_s']),
                      statistics.median(f['master_cpu_s']), statistics.median(f['sim_cpu_s']),
                      statistics.median(f['sim_write_wall_s'])))
    if failed:
        print('\nFAILED: %s' % failed)
    if opts.keep:
        print('kept: %s' % workdir)
    os.makedirs(os.path.dirname(os.path.abspath(opts.json)), exist_ok=True)
    with open(opts.json, 'w') as f:
        json.dump({'meta': meta, 'failed': failed, 'rows': results.rows,
                   'details': results.details}, f, indent=1)
    print('JSON: %s' % opts.json)


if __name__ == '__main__':
    sys.exit(main())
