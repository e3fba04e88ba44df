"""A simulated node: the client's real brain on its connection, many per process.

The real `dpd.loop.Controller` drives the real `ClientPolicy`; `SimExecutor`
stands in for the client's executor: it sends on the node's sockets, writes the
worker file with `dpd.cluster.workerfile.write` and then shows the policy what a
worker would (every process running), answers RebuildLink, and ignores logs,
state snapshots and sd_notify. The scheduler of many nodes (which node has a
message, whose deadline is due) is the child process's (simchild.py).
"""
import os
import random
import time
from collections import Counter

import zmq

from dpd import jsonfile
from dpd.cluster import actions as act
from dpd.cluster import events as ev
from dpd.cluster import sockets as net
from dpd.cluster import workerfile
from dpd.cluster.client import ClientPolicy
from dpd.cluster.config import ClientConfig
from dpd.cluster.link import EVENT_NAMES, MONITORED, monitor_event
from dpd.loop import Controller

from . import mono
from .lists import running_processes

MAX_TICKS = 3       # due deadlines handled in a row after a fact (as the controller would)
MONITOR = 'monitor'  # the name a socket's monitor is registered under in the child


class SimSockets:
    """A node's sockets (its DEALER), made from the client's own plans, and their
    monitors, whose events the node hears as the client does (a new connection's
    handshake makes it say HELLO), in the child's poller."""

    def __init__(self, child, node, plans):
        self.child, self.node, self.plans = child, node, plans
        self.by_name, self.monitors = {}, {}

    def open(self):
        for plan in self.plans:
            sock = self.child.ctx.socket(plan.kind)
            sock.linger = 0
            for option, value in plan.options:
                sock.setsockopt(option, value)
            monitor = sock.get_monitor_socket(MONITORED)
            sock.connect(plan.endpoint)
            self.by_name[plan.name], self.monitors[monitor] = sock, plan.name
            self.child.register(sock, self.node, plan.name)
            self.child.register(monitor, self.node, MONITOR)

    def event(self, monitor, frames):
        """The LinkEvent a monitor's message says, or None."""
        event = monitor_event(frames)
        name = EVENT_NAMES.get(event and event[0])
        socket_name = self.monitors.get(monitor)
        if name is None or socket_name is None:
            return None
        return ev.LinkEvent(socket_name, name, '%s %s' % (event[2], event[1]))

    def close(self):
        for sock in self.by_name.values():
            sock.disable_monitor()
        for sock in list(self.by_name.values()) + list(self.monitors):
            self.child.unregister(sock)
            sock.close(0)
        self.by_name.clear()
        self.monitors.clear()

    def send(self, name, frames):
        """False when the frames were dropped (a full queue: the protocol repairs loss)."""
        sock = self.by_name[name]
        try:
            sock.send_multipart(frames, zmq.NOBLOCK)
            return True
        except zmq.ZMQError:
            return False
        finally:
            self.child.look_at(sock)


class SimExecutor:
    """What the client's executor does, for a simulated node."""

    def __init__(self, node):
        self.node = node
        self.table = {act.Send: self.send, act.WriteWorkerFile: self.write,
                      act.RebuildLink: self.rebuild}

    def perform(self, action):
        perform = self.table.get(type(action))
        return perform(action) if perform is not None else ()   # logs, state, sd_notify

    def send(self, action):
        counts = self.node.counts
        counts['send:' + action.frames[0].decode()] += 1
        if not self.node.sockets.send(action.socket, action.frames):
            counts['send-dropped'] += 1
        return ()

    def write(self, action):
        node, started = self.node, time.perf_counter()
        try:
            workerfile.write(node.conf_file, action.entries, action.record)
        except workerfile.Refused as err:
            node.counts['write-refused'] += 1
            return [ev.WorkerFileRefused((str(err),))]
        node.wrote(time.perf_counter() - started)
        applied = dict(action.record)
        return [ev.WorkerFileWritten(applied), worker_shows(applied, action.entries)]

    def rebuild(self, action):
        self.node.counts['rebuilds'] += 1
        self.node.sockets.close()
        self.node.sockets.open()
        return [ev.LinkEvent('*', 'rebuilt', '')]


def worker_shows(applied, entries):
    """What a worker's state file would say right after it loaded `entries`."""
    since = round(time.time(), 3)
    return ev.WorkerObserved(
        applied=applied,
        worker={'running': True, 'pid': 4242, 'config_ok': True, 'errors': []},
        processes=tuple(running_processes(entries, since)))


class SimNode:
    """One simulated node: its connection, the real Controller and ClientPolicy."""

    def __init__(self, child, index, name, conf_file, endpoints):
        self.child, self.index, self.name, self.conf_file = child, index, name, conf_file
        config = ClientConfig(path=conf_file + '.client.json', master_stats=endpoints[0],
                              master_updates=endpoints[1], node_name=name, conf_file=conf_file)
        self.policy = ClientPolicy(config, name, os.urandom(8).hex(),
                                   rng=random.Random(hash(name)))
        self.controller = Controller(self.policy, SimExecutor(self), events=None, clock=mono)
        self.sockets = SimSockets(child, self, net.client_plans(config, None))
        self.scheduled = None         # the deadline this node has in the child's heap
        self.has_written = False      # a worker file write since the waits last looked
        self.applied_at = None        # when the last worker file write returned
        self.confirmed = {}           # epoch -> first ACK/STATE for what it holds
        self.received_at = {}         # message type -> when the last one arrived
        self.breakdown = None         # when the STATE of the last write came
        self.counts = Counter()

    # -------------------------------------------------------------- what the child calls

    @property
    def status(self):
        return self.policy.status

    def start(self):
        workerfile.default_conf(self.conf_file)
        self.sockets.open()
        self.handle(workerfile.observe(self.conf_file))
        self.settle()

    def on_message(self, socket_name, frames, now):
        kind = bytes(frames[0])[:16]
        self.counts['recv:' + kind.decode('ascii', 'replace')] += 1
        self.received_at[kind] = now
        self.handle(ev.LinkMessage(socket_name, tuple(frames)))
        if kind in (b'ACK', b'STATE'):
            self._note_confirmation(frames[1], now)

    def on_link_event(self, event, now):
        self.handle(event)

    def on_deadline(self):
        self.handle(ev.Tick())

    def settle(self):
        """After a batch of facts: the state flush, and the next deadline scheduled."""
        self.controller.flush()
        self.child.schedule(self, self.policy.next_deadline())

    def reached(self, sha256):
        """When the worker file got `sha256`; None if it does not hold it."""
        held = (self.policy.applied or {}).get('sha256')
        return self.applied_at if held == sha256 else None

    def close(self):
        self.sockets.close()

    # -------------------------------------------------------------- inside

    def handle(self, event):
        """One fact through the controller, then the deadlines it made due."""
        self.controller.dispatch(event)
        for _ in range(MAX_TICKS):
            deadline = self.policy.next_deadline()
            if deadline is None or deadline > mono():
                break
            self.controller.dispatch(ev.Tick())
        if self.has_written:     # the policy knows of the write now: the waits may end
            self.has_written = False
            self.child.changed(self)

    def wrote(self, seconds):
        self.applied_at = mono()
        self.breakdown = self.received_at.get(b'STATE')
        self.counts['writes'] += 1
        self.child.write_seconds += seconds
        self.has_written = True

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
