"""A node that only acknowledges (--master-only): the master's traffic, none of the
client's work.

Per node a DEALER with the client's socket options (`client_plans`) and its
monitor, and the client's message rules, cut to what the master sees:

* HELLO once each connection's handshake is done (at start, and after a master
  restart), and every 2 s until the master answers (none while disconnected);
* every STATE: its (gen, sha256) recorded as held (no validation, no file) and
  reported at once: a REPORT with `applied` = that version, its worker having
  loaded it then, every process running (ready at once, for a staged rollout);
* a REPORT every 10 s +-20 %, like a client, or as often as the master's ACK says
  (its `report_ivl`, which grows with the fleet past 500 nodes); after the REPORT
  of a new list, the next one comes in 0.2-1.2 intervals, as the client's.

Headers are decoded with the protocol's own decoders (strict JSON, a STATE's body
checked against its sha256); the body is read only for its process names, with
the stdlib's plain `json.loads`.
"""
import json
import os
import random
import time
from collections import Counter

from dpd import __version__
from dpd.cluster import protocol
from dpd.cluster import sockets as net
from dpd.cluster.client import HELLO_RETRY
from dpd.cluster.config import ClientConfig
from dpd.cluster.protocol import MAX_REPORT_IVL, REPORT_IVL, STATS

from . import mono
from .lists import running_processes
from .simnode import SimSockets

WORKER = {'running': True, 'pid': 4242, 'config_ok': True, 'errors': []}


class AckNode:
    def __init__(self, child, index, name, endpoints):
        self.child, self.index, self.name = child, index, name
        config = ClientConfig(path=name + '.client.json', master_stats=endpoints[0],
                              master_updates=endpoints[1], node_name=name,
                              conf_file=name + '.worker.json')
        self.sockets = SimSockets(child, self, net.client_plans(config, None))
        self.boot = os.urandom(8).hex()
        self.rng = random.Random(hash(name))
        self.held = None              # {gen, sha256} of the last STATE
        self.report_frames = None     # the REPORT for what it holds, encoded once
        self.hello_at = self.report_at = None
        self.report_ivl = REPORT_IVL
        self.scheduled = None         # the deadline this node has in the child's heap
        self.acked = {}               # sha256 -> first ACK for it
        self.confirmed = {}           # epoch -> first ACK/STATE for what it holds
        self.received_at = {}         # message type -> when the last one arrived
        self.breakdown = None         # when the last new STATE came
        self.counts = Counter()
        self.handlers = {'STATE': self._on_state, 'ACK': self._on_ack}

    # -------------------------------------------------------------- what the child calls

    @property
    def status(self):
        held = self.held and self.held['sha256']
        return 'acked' if held in self.acked else 'holds' if held else 'empty'

    def start(self):
        self.sockets.open()
        now = mono()
        self.report_at = now + self._report_interval()
        self.settle()

    def on_message(self, socket_name, frames, now):
        try:
            message = protocol.decode_reply(frames)
        except protocol.ProtocolError:
            self.counts['recv-bad'] += 1
            return
        self.counts['recv:' + message.kind] += 1
        self.received_at[message.kind] = now
        self.hello_at = None                  # the master answers: no more HELLO retries
        handler = self.handlers.get(message.kind)
        if handler is not None:
            handler(message, now)

    def on_link_event(self, event, now):
        if event.kind == 'handshake-ok':
            self._hello(now)
        elif event.kind == 'disconnected':
            self.hello_at = None

    def on_deadline(self):
        now = mono()
        if self.hello_at is not None and now >= self.hello_at:
            self._hello(now)
        if now >= self.report_at:
            self._report(now)

    def settle(self):
        self.child.schedule(self, min(d for d in (self.hello_at, self.report_at)
                                      if d is not None))

    def reached(self, sha256):
        """When the master acknowledged `sha256`; None if it has not (yet)."""
        return self.acked.get(sha256)

    def close(self):
        self.sockets.close()

    # -------------------------------------------------------------- messages

    def _on_state(self, message, now):
        fields = message.fields
        if self._holds(fields['sha256']):
            self._confirmed(fields['epoch'], now)
            return
        self.counts['state-new'] += 1         # a client would rewrite its worker file
        self.breakdown = now
        self.held = {'gen': fields['gen'], 'sha256': fields['sha256']}
        self.report_frames = self._encode_report(json.loads(message.body))
        self._report(now, after_change=True)

    def _on_ack(self, message, now):
        self.report_ivl = min(MAX_REPORT_IVL, max(REPORT_IVL, message.fields['report_ivl']))
        sha256 = message.fields['sha256']
        if not self._holds(sha256):
            return
        self._confirmed(message.fields['epoch'], now)
        if sha256 not in self.acked:
            self.acked[sha256] = now
            self.child.changed(self)

    def _confirmed(self, epoch, now):
        if epoch not in self.confirmed:
            self.confirmed[epoch] = now
            self.child.changed(self)

    def _holds(self, sha256):
        return self.held is not None and self.held['sha256'] == sha256

    # -------------------------------------------------------------- sends

    def _hello(self, now):
        self._send(protocol.hello(self.name, self.boot, __version__, self.held))
        self.hello_at = now + HELLO_RETRY

    def _report(self, now, after_change=False):
        self._send(self.report_frames or self._encode_report([]))
        self.report_at = now + self._report_interval(after_change)

    def _encode_report(self, entries):
        since = round(time.time(), 3)
        processes = running_processes(entries, since)
        return protocol.report(self.name, self.boot, __version__, self.held,
                               last_rejected=None,
                               worker=dict(WORKER, config_loaded_at=since) if self.held else {},
                               processes=processes, reason='in-sync' if self.held
                               else 'connecting')

    def _report_interval(self, after_change=False):
        """As the client's: after a report of a change, 0.2-1.2 intervals."""
        return self.report_ivl * self.rng.uniform(0.2 if after_change else 0.8, 1.2)

    def _send(self, frames):
        self.counts['send:' + frames[0].decode()] += 1
        if not self.sockets.send(STATS, frames):
            self.counts['send-dropped'] += 1
