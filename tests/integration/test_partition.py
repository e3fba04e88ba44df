"""A network partition between the master and a node (SPEC 4: "fail static", then
converge after the heal), over a real network: two network namespaces joined by a
veth pair (research/reliability.md 3.4 and reliability_netns.sh).

Root only. The addresses are link-local (169.254.77.1/30 and .2) and exist only
inside the two namespaces this test creates (names with the test's pid in
them); the host's own interfaces and addresses are never touched. 127/8 is not
used on purpose: on a veth it is martian. dpd-masterd runs in one namespace,
dpd-clientd in the other; dpd-workerd needs no network and runs outside.
"""
import os
import re
import shutil
import signal
import subprocess
import time

import pytest

from support import (IS_ROOT, TIMEOUT, Daemon, command, pid_alive, read_json, wait_until,
                     write_json)

pytestmark = [
    pytest.mark.skipif(not IS_ROOT, reason='network namespaces need root'),
    pytest.mark.skipif(shutil.which('ip') is None, reason='`ip` (iproute2) is not installed'),
]

MASTER_ADDR, CLIENT_ADDR = '169.254.77.1', '169.254.77.2'
STATS, UPDATES = 31123, 31124        # inside the master's own namespace: no clash possible
PARTITION_WAIT = 4.0                 # how long the cut-off node is watched (a duration)
HEAL_WITHIN = 15.0


def ip(*args, check=True):
    done = subprocess.run(('ip',) + args, capture_output=True, text=True, timeout=TIMEOUT,
                          stdin=subprocess.DEVNULL)
    if check and done.returncode != 0:
        raise AssertionError('ip %s: %s' % (' '.join(args), done.stderr.strip()))
    return done


class Network:
    """Namespaces M (master) and C (client), a veth pair between them."""

    def __init__(self):
        pid = os.getpid()
        self.master_ns, self.client_ns = 'dpdt-m%d' % pid, 'dpdt-c%d' % pid
        self.master_if, self.client_if = 'dpvm%d' % pid, 'dpvc%d' % pid   # <= 15 chars
        self.created = []

    def up(self):
        for ns in (self.master_ns, self.client_ns):
            done = ip('netns', 'add', ns, check=False)
            if done.returncode != 0:
                if not self.created:
                    pytest.skip('cannot create a network namespace here: %s'
                                % done.stderr.strip())
                raise AssertionError('ip netns add %s: %s' % (ns, done.stderr.strip()))
            self.created.append(ns)
        # created in the master's namespace, so not even for a moment on the host's
        ip('-n', self.master_ns, 'link', 'add', self.master_if, 'type', 'veth', 'peer', 'name',
           self.client_if, 'netns', self.client_ns)
        for ns, dev, addr in ((self.master_ns, self.master_if, MASTER_ADDR),
                              (self.client_ns, self.client_if, CLIENT_ADDR)):
            ip('-n', ns, 'link', 'set', 'lo', 'up')
            ip('-n', ns, 'addr', 'add', addr + '/30', 'dev', dev)
            ip('-n', ns, 'link', 'set', dev, 'up')
        ip('-n', self.client_ns, 'route', 'get', MASTER_ADDR)

    def cut(self):
        """A silent black hole both ways: established TCP stays "up", packets vanish."""
        ip('-n', self.client_ns, 'route', 'add', 'blackhole', MASTER_ADDR + '/32')
        ip('-n', self.master_ns, 'route', 'add', 'blackhole', CLIENT_ADDR + '/32')

    def heal(self):
        ip('-n', self.client_ns, 'route', 'del', 'blackhole', MASTER_ADDR + '/32')
        ip('-n', self.master_ns, 'route', 'del', 'blackhole', CLIENT_ADDR + '/32')

    def down(self):
        """Deleting a namespace deletes its veth end, and with it the peer."""
        for ns in reversed(self.created):
            ip('netns', 'del', ns, check=False)
        self.created = []


class NetnsDaemon(Daemon):
    """A daemon started with `ip netns exec NS`. `ip` may exec it in place or fork it,
    so its pid is taken from its own "ready (pid N" line, and stop() ends both that
    pid and the child we started: TERM, then KILL, each by pid; then reaps them."""

    def __init__(self, netns, program, config, extra=()):
        super().__init__(program, config, extra)
        self.netns = netns
        self.daemon_pid = None

    def start(self, wait_ready=True, timeout=TIMEOUT):
        with open(self.log_path, 'ab') as log:
            self.log_offset = log.tell()
            self.proc = subprocess.Popen(
                ['ip', 'netns', 'exec', self.netns] + command(self.program)
                + ['-f', '-v'] + self.extra + [self.config],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        self.wait_log('ready (pid ', timeout)
        self.daemon_pid = int(re.search(r'ready \(pid (\d+)', self.log()).group(1))
        return self

    def _pids(self):
        return sorted({p for p in (self.daemon_pid, self.proc and self.proc.pid) if p})

    def stop(self, timeout=TIMEOUT):
        if self.proc is None:
            return None
        for signum in (signal.SIGTERM, signal.SIGKILL):
            for pid in self._pids():
                if pid_alive(pid):
                    try:
                        os.kill(pid, signum)
                    except ProcessLookupError:
                        pass
            deadline = time.monotonic() + (timeout if signum == signal.SIGTERM else 5.0)
            while time.monotonic() < deadline and any(pid_alive(p) for p in self._pids()):
                self._reap()
                time.sleep(0.02)
            if not any(pid_alive(p) for p in self._pids()):
                break
        self._reap()
        try:
            return self.proc.wait(5.0)
        except subprocess.TimeoutExpired:
            raise AssertionError('%s (pids %s) survived KILL' % (self.program, self._pids()))

    def _reap(self):
        self.proc.poll()
        if self.daemon_pid and self.daemon_pid != self.proc.pid:
            try:     # a grandchild re-parented to us (the session's subreaper)
                os.waitpid(self.daemon_pid, os.WNOHANG)
            except ChildProcessError:
                pass


@pytest.fixture
def network():
    net = Network()
    try:
        net.up()
        yield net
    finally:
        net.down()


def identity(path):
    info = os.stat(path)
    with open(path, 'rb') as f:
        return info.st_ino, info.st_mtime_ns, f.read()


class NetnsCluster:
    """dpd-masterd in M, dpd-clientd in C, dpd-workerd outside (it needs no network)."""

    def __init__(self, network, workdir):
        self.workdir = workdir
        self.endpoints = {'master_stats': 'tcp://%s:%d' % (MASTER_ADDR, STATS),
                          'master_updates': 'tcp://%s:%d' % (MASTER_ADDR, UPDATES)}
        self.master_config = workdir.join('master.json')
        self.worker_config = workdir.join('worker.json')
        client_config = workdir.join('client.json')
        self.write_master(workdir.actor('a', 'sleep'))
        write_json(self.worker_config, {'procs': []}, mode=0o600)
        write_json(client_config, dict(self.endpoints, node_name='web1',
                                       conf_file=self.worker_config,
                                       allowed_users=['root', 'nobody']))
        self.worker = Daemon('dpd-workerd', self.worker_config, ['--policy', workdir.policy()])
        self.master = NetnsDaemon(network.master_ns, 'dpd-masterd', self.master_config)
        self.client = NetnsDaemon(network.client_ns, 'dpd-clientd', client_config,
                                  ['--policy', workdir.policy()])

    def write_master(self, *procs):
        write_json(self.master_config, dict(self.endpoints, nodes={'web1': list(procs)}))

    def start(self):
        self.worker.start()
        self.master.start()
        self.client.start()
        wait_until(lambda: list(self.running()) == ['a'], message=lambda: self.client.log())
        wait_until(lambda: self.node_state() == 'in-sync')

    def running(self):
        try:
            doc = read_json(self.workdir.join('worker.state.json'))
        except (OSError, ValueError):
            return {}
        return {p['name']: p['pid'] for p in doc['procs'] if p['state'] == 'running'}

    def node_state(self):
        try:
            nodes = read_json(self.workdir.join('master.state.json'))['nodes']
        except (OSError, ValueError, KeyError):
            return None
        return {n['node']: n['state'] for n in nodes}.get('web1')

    def stop(self):
        errors = []
        for daemon in (self.client, self.master, self.worker):
            try:
                daemon.stop()
            except AssertionError as err:
                errors.append(str(err))
        return errors


def test_a_partition_changes_nothing_on_the_node_and_it_converges_after(network, workdir):
    cluster = NetnsCluster(network, workdir)
    worker, master, client, running = cluster.worker, cluster.master, cluster.client, \
        cluster.running
    try:
        cluster.start()
        pids, before = running(), identity(cluster.worker_config)

        network.cut()
        cluster.write_master(workdir.actor('a', 'sleep'), workdir.actor('b', 'sleep'))
        master.wait_log('node web1: list version', count=2)
        # Fail static is a duration by nature: watch the cut-off node for a while.
        time.sleep(PARTITION_WAIT)
        assert identity(cluster.worker_config) == before, 'the worker file is untouched'
        assert running() == pids, 'no process started, stopped or restarted'
        assert all(pid_alive(pid) for pid in pids.values())
        for daemon in (worker, master, client):
            assert daemon.proc.poll() is None, daemon.log()

        healed = time.monotonic()
        network.heal()
        wait_until(lambda: sorted(running()) == ['a', 'b'], HEAL_WITHIN,
                   message=lambda: 'b running within %g s of the heal; client log:\n%s'
                   % (HEAL_WITHIN, client.log()[-3000:]))
        assert running()['a'] == pids['a'], 'an unchanged process keeps its pid'
        wait_until(lambda: cluster.node_state() == 'in-sync',
                   HEAL_WITHIN - (time.monotonic() - healed))
    finally:
        errors = cluster.stop()
    assert not errors, errors      # (after the body's own failure, if any, is reported)


def test_commands_cross_the_network_and_a_cut_off_node_is_said_within_5_s(network, workdir):
    """dpd-ctl on the host asks the master (its Unix socket), which relays over TCP
    between the namespaces; cut, the node cannot answer and the operator hears so."""
    cluster = NetnsCluster(network, workdir)

    def ctl(*args):
        done = subprocess.run(command('dpd-ctl') + [args[0], '-c', cluster.master_config,
                                                    '--node', 'web1'] + list(args[1:]),
                              capture_output=True, text=True, timeout=TIMEOUT)
        return done.returncode, done.stdout + done.stderr
    try:
        cluster.start()
        pid = cluster.running()['a']
        code, out = ctl('restart', 'a')
        assert code == 0 and cluster.running()['a'] != pid, out
        network.cut()
        started = time.monotonic()
        code, out = ctl('signal', 'HUP', 'a')
        assert code == 1 and 'node web1 did not answer within 5 s' in out, out
        assert time.monotonic() - started < 7
    finally:
        errors = cluster.stop()
    assert not errors, errors
