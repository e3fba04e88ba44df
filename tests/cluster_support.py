"""A cluster on one machine for tests: a master, and nodes (a client and a worker).

Endpoints are ipc:// sockets in the test's directory, so tests never touch a
network address and never collide on ports.
"""
import json
import os
import subprocess

from support import Daemon, IS_ROOT, command, read_json, wait_until, write_json


class Cluster:
    def __init__(self, workdir, nodes=None, master_extra=None):
        self.workdir = workdir
        self.stats = 'ipc://' + workdir.join('stats.sock')
        self.updates = 'ipc://' + workdir.join('updates.sock')
        self.master_config = workdir.join('master.json')
        self.master_extra = master_extra or {}
        self.master = None
        self.nodes = {}
        self.write_master(nodes or {})

    # ------------------------------------------------------------ the master

    def write_master(self, nodes, **extra):
        doc = dict({'master_stats': self.stats, 'master_updates': self.updates,
                    'nodes': nodes}, **dict(self.master_extra, **extra))
        write_json(self.master_config, doc)

    def start_master(self, **keys):
        self.master = Daemon('dpd-masterd', self.master_config, **keys).start()
        return self.master

    def master_state(self):
        try:
            doc = read_json(self.workdir.join('master.state.json'))
        except (OSError, ValueError):
            return {}
        return {n['node']: n for n in doc.get('nodes', [])}

    def wait_node_state(self, node, state, timeout=15):
        wait_until(lambda: self.master_state().get(node, {}).get('state') == state, timeout,
                   message=lambda: 'node %s %s; master says %s' % (
                       node, state, json.dumps(self.master_state().get(node), indent=1)))

    # ------------------------------------------------------------ nodes

    def add_node(self, name, with_worker=True, client_extra=None):
        node = Node(self, name, client_extra or {})
        self.nodes[name] = node
        if with_worker:
            node.start_worker()
        return node

    def stop(self):
        for node in self.nodes.values():
            node.stop()
        if self.master is not None:
            self.master.stop()


class Node:
    def __init__(self, cluster, name, client_extra):
        self.cluster, self.name = cluster, name
        self.dir = cluster.workdir.join(name)
        os.mkdir(self.dir, 0o755)
        os.chmod(self.dir, 0o755)
        self.worker_config = os.path.join(self.dir, 'worker.json')
        self.client_config = os.path.join(self.dir, 'client.json')
        write_json(self.worker_config, {'procs': []}, mode=0o600)
        write_json(self.client_config, dict({
            'master_stats': cluster.stats, 'master_updates': cluster.updates,
            'node_name': name, 'conf_file': self.worker_config,
            'allowed_users': ['root', 'nobody'] if IS_ROOT else None}, **client_extra))
        if not IS_ROOT:
            doc = read_json(self.client_config)
            del doc['allowed_users']
            write_json(self.client_config, doc)
        self.worker = self.client = None

    def start_worker(self):
        policy = self.cluster.workdir.policy()
        self.worker = Daemon('dpd-workerd', self.worker_config, ['--policy', policy]).start()
        return self.worker

    def start_client(self, **keys):
        policy = ['--policy', self.cluster.workdir.policy()]
        keys['extra'] = policy + list(keys.get('extra', ()))
        self.client = Daemon('dpd-clientd', self.client_config, **keys).start()
        return self.client

    def procs(self):
        """The names in this node's worker file."""
        try:
            return [p['name'] for p in read_json(self.worker_config)['procs']]
        except (OSError, ValueError, KeyError):
            return None

    def worker_doc(self):
        return read_json(self.worker_config)

    def running(self):
        """{name: pid} of the processes the worker reports running."""
        try:
            doc = read_json(os.path.join(self.dir, 'worker.state.json'))
        except (OSError, ValueError):
            return {}
        return {p['name']: p['pid'] for p in doc['procs'] if p['state'] == 'running'}

    def stop(self):
        for daemon in (self.client, self.worker):
            if daemon is not None:
                daemon.stop()


def ctl(cluster, *args, timeout=20):
    """`dpd-ctl VERB -c MASTER_CONFIG ARGS...` against the cluster's master:
    (status, stdout, stderr)."""
    done = subprocess.run(command('dpd-ctl') + list(args[:1]) + ['-c', cluster.master_config] +
                          list(args[1:]), capture_output=True, text=True, timeout=timeout)
    return done.returncode, done.stdout, done.stderr
