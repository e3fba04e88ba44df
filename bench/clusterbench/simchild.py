"""A child process holding many simulated nodes (SimNode or AckNode), and their
scheduler: one epoll for every socket, one heap of the nodes' deadlines.

Not zmq.Poller: it polls every socket on every call (350 us for 500 sockets
here), which made the simulators of 1000 nodes use a third of a core while idle
(measured with nodes that only acknowledge; 10 % with epoll).
epoll waits on each socket's ZMQ_FD, which only says "look at ZMQ_EVENTS": a
socket whose events show POLLIN stays in `readable` until a receive finds it
empty, and is looked at again after every send on it (a send may consume the
signal).

Commands come on stdin and answers go to stdout, one JSON object a line (see
fleet.py): `expect` (the hashes of a list version, before it is saved), `wait`
(until every node reached a list version, or was confirmed under a new epoch),
`cancel`, `fsync`, `stats`, `quit`.
"""
import heapq
import json
import os
import select
import signal
import sys
from collections import Counter

import zmq

from dpd import jsonfile

from . import mono
from .acknode import AckNode
from .lists import node_list, sha_of
from .proc import raise_nofile
from .simnode import MONITOR, SimNode

RECV_BATCH = 64          # messages taken from one socket before looking at the others
FSYNC = [True]           # the simulated clients' worker file writes fsync ('fsync' command)


class Wait:
    """A condition over every node of a child, answered as soon as it holds."""

    def __init__(self, request, nodes, expected=None):
        self.id, self.what = request['id'], request['what']
        self.request = request
        self.want = {}
        if self.what == 'rev':
            self.want = expected or expected_shas(request, nodes)
        self.times, self.steps = {}, {}
        self.pending = set()
        for node in nodes:
            if not self.check(node):
                self.pending.add(node.name)

    def check(self, node):
        """Record `node` as done if it is; True when it is."""
        if self.what == 'rev':   # its file holds the version (SimNode) / the master ACKed it
            when = node.reached(self.want[node.name])
        else:   # 'confirmed': under an epoch other than 'not_epoch', after 'after'
            times = [t for e, t in node.confirmed.items()
                     if e != self.request['not_epoch'] and t > self.request['after']]
            when = min(times) if times else None
        if when is None:
            return False
        self.times[node.name] = when
        if self.what == 'rev':
            self.steps[node.name] = node.breakdown
        self.pending.discard(node.name)
        return True


def expected_shas(request, nodes):
    """{node: the sha256 of its list at request['rev']}."""
    return {n.name: sha_of(node_list(n.name, request['rev'], request['procs'])) for n in nodes}


class SimChild:
    """Many simulated nodes in one process; commands on stdin, answers on stdout."""

    def __init__(self, cfg):
        self.ctx = zmq.Context(io_threads=cfg.get('io_threads', 1))
        self.ctx.set(zmq.MAX_SOCKETS, 3 * len(cfg['nodes']) + 64)   # DEALER, its monitor
        self.epoll = select.epoll()
        self.owners = {}              # ZMQ_FD -> (socket, node, its name in the plan)
        self.readable = {}            # sockets that may hold messages (an ordered set)
        self.heap = []
        self.waits = {}
        self.expected = {}            # (rev, procs) -> expected_shas, made before the save
        self.write_seconds = 0.0
        self.inbox = b''
        self.nodes = [make_node(self, i, name, cfg) for i, name in enumerate(cfg['nodes'])]

    # -------------------------------------------------------------- what the nodes call

    def register(self, sock, node, name):
        fd = sock.getsockopt(zmq.FD)
        self.epoll.register(fd, select.EPOLLIN)
        self.owners[fd] = (sock, node, name)
        self.look_at(sock)

    def unregister(self, sock):
        fd = sock.getsockopt(zmq.FD)
        self.epoll.unregister(fd)
        self.owners.pop(fd, None)
        self.readable.pop(sock, None)

    def look_at(self, sock):
        """After a wake-up of its fd or a send on it: does `sock` hold messages?"""
        if sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            self.readable[sock] = True

    def schedule(self, node, deadline):
        if deadline is not None and deadline != node.scheduled:
            node.scheduled = deadline
            heapq.heappush(self.heap, (deadline, node.index))

    def changed(self, node):
        for wait in list(self.waits.values()):
            if node.name in wait.pending and wait.check(node) and not wait.pending:
                self.answer(wait)

    # -------------------------------------------------------------- the loop

    def run(self):
        for node in self.nodes:
            node.start()
        self.epoll.register(0, select.EPOLLIN)
        while True:
            for fd, _ in self.epoll.poll(self._poll_timeout()):
                if fd == 0:
                    if not self.read_commands():
                        return
                elif fd in self.owners:
                    self.look_at(self.owners[fd][0])
            for sock in list(self.readable):
                if sock in self.readable:     # not closed by a node meanwhile
                    self.drain(sock)
            self.run_timers()

    def _poll_timeout(self):
        if self.readable:
            return 0.0
        if not self.heap:
            return 0.1
        return min(0.1, max(0.0, self.heap[0][0] - mono()))

    def drain(self, sock):
        _, node, name = self.owners[sock.getsockopt(zmq.FD)]
        for _ in range(RECV_BATCH):
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                self.readable.pop(sock, None)
                break
            if name == MONITOR:
                event = node.sockets.event(sock, frames)
                if event is not None:
                    node.on_link_event(event, mono())
            else:
                node.on_message(name, frames, mono())
            if sock.closed:                   # the node rebuilt its sockets
                break
        node.settle()

    def run_timers(self):
        now = mono()
        while self.heap and self.heap[0][0] <= now:
            deadline, index = heapq.heappop(self.heap)
            node = self.nodes[index]
            if node.scheduled == deadline:
                node.scheduled = None
                node.on_deadline()
                node.settle()

    # -------------------------------------------------------------- commands

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
        if cmd == 'expect':
            self.expected = {(request['rev'], request['procs']): expected_shas(request,
                                                                               self.nodes)}
            self.say({'id': request['id']})
        elif cmd == 'wait':
            wait = Wait(request, self.nodes,
                        self.expected.get((request.get('rev'), request.get('procs'))))
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

    def answer(self, wait):
        del self.waits[wait.id]
        self.say({'id': wait.id, 'times': wait.times, 'steps': wait.steps})

    @staticmethod
    def say(doc):
        sys.stdout.write(json.dumps(doc) + '\n')
        sys.stdout.flush()

    def stats(self):
        counts = Counter()
        for node in self.nodes:
            counts.update(node.counts)
        times = os.times()
        return {'counts': dict(counts), 'cpu_s': times.user + times.system,
                'write_s': self.write_seconds, 'nodes': len(self.nodes),
                'status': dict(Counter(n.status for n in self.nodes))}

    def close(self):
        for node in self.nodes:
            node.close()
        self.epoll.close()
        self.ctx.term()


def make_node(child, index, name, cfg):
    endpoints = (cfg['master_stats'], cfg['master_updates'])
    if cfg.get('kind') == 'ack':
        return AckNode(child, index, name, endpoints)
    conf_file = os.path.join(cfg['dir'], name, 'worker.json')
    os.makedirs(os.path.dirname(conf_file), 0o700, exist_ok=True)
    return SimNode(child, index, name, conf_file, endpoints)


def switchable_fsync():
    """The worker file writes fsync only while FSYNC[0] says so."""
    original = jsonfile.replace_file
    jsonfile.replace_file = lambda path, data, mode=0o644, durable=True: \
        original(path, data, mode, durable=durable and FSYNC[0])


def sim_child_main(config_path):
    with open(config_path) as f:
        cfg = json.load(f)
    raise_nofile()
    signal.signal(signal.SIGINT, signal.SIG_IGN)     # the parent stops us
    switchable_fsync()
    FSYNC[0] = cfg.get('fsync', True)
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
        child.close()
