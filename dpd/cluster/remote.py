"""How the master's policy relays operators' commands to nodes (SPEC 6.3,
`dpd-ctl --node NODE`).

A part of MasterPolicy (master.py), written apart so each reads alone. A
request from the master's control socket becomes a COMMAND on the one
connection the node last spoke on; its ANSWERs are taken from that
connection alone and passed on to the operator. The node acknowledges a
COMMAND at once: a node that does not within ACK_SECONDS, or that goes
stale meanwhile, is said to be gone. A relay that can get no more answers
ends with the reason, so that dpd-ctl never waits for ever: its node's
ANSWER could not be taken (too large: protocol.RepeatedRequests says which
connection sent it), or its node connected again (libzmq drops a connection
that sends a message over MAXMSGSIZE, and what it carried is lost). When
the operator hangs up, or reads too slowly (control.py ends the connection),
the node gets CANCEL.
"""
import logging

from .. import requests
from ..policy import log_action
from . import actions as act
from . import protocol
from .protocol import STATS

ACK_SECONDS = 5.0           # SPEC 6.3: a node that is not there is said within 5 s
MAX_RELAYS_PER_NODE = 16
MAX_RELAYS = 256


class Relay:
    """A command on its way to a node, or streaming back from it."""

    def __init__(self, number, node, routing_id, ack_by):
        self.number, self.node, self.routing_id = number, node, routing_id
        self.ack_by = ack_by          # the node must acknowledge by then (None: it did)


class Remote:
    def _on_command(self, event, now, out):
        request = requests.received(event, out)
        if request is None:
            return
        node = self.nodes.get(request.node) if request.node is not None else None
        refusal = self._command_refusal(request, node, now)
        if refusal is not None:
            out.append(act.Reply(event.number, requests.refused(refusal)))
            return
        self.relay_count += 1
        ref = '%s-%d' % (self.epoch, self.relay_count)
        self.relays[ref] = Relay(event.number, node.name, node.routing_id, now + ACK_SECONDS)
        self.requests.unreadable_answers.pop(node.routing_id, None)    # not this command's
        out.append(log_action(logging.INFO, 'node %s: dpd-ctl %s %s (uid %d)' % (
            node.name, request.command, ' '.join(request.names), event.uid)))
        out.append(act.Send(STATS, (node.routing_id,) + tuple(protocol.command(
            node.name, ref, request.as_json(node=False)))))

    def _command_refusal(self, request, node, now):
        if request.node is None:
            return 'the master runs no processes: name a node with --node'
        if node is None or not node.managed:
            return 'no node %s in %s' % (request.node, self.config.path if self.config
                                         else 'the master file')
        if not self._connected(node, now):
            return 'node %s is not connected, %s' % (node.name, _last_seen(node, now))
        if len(self.relays) >= MAX_RELAYS or sum(
                1 for r in self.relays.values() if r.node == node.name) >= MAX_RELAYS_PER_NODE:
            return 'too many commands in flight (node %s)' % node.name
        return None

    def _connected(self, node, now):
        return node.routing_id is not None and self._state_of(node, now) != 'stale'

    def _on_command_gone(self, event, now, out):
        for ref, relay in list(self.relays.items()):
            if relay.number == event.number:
                del self.relays[ref]
                self._cancel(ref, relay, out)

    def _cancel(self, ref, relay, out):
        """CANCEL on the relay's connection, and on its node's new one if it has one:
        a client goes on relaying across a reconnect."""
        node = self.nodes.get(relay.node)
        for routing_id in dict.fromkeys((relay.routing_id, node and node.routing_id)):
            if routing_id is not None:
                out.append(act.Send(STATS, (routing_id,) + tuple(protocol.cancel(
                    relay.node, ref))))

    def _on_answer(self, node, routing_id, message, now, out):
        """An ANSWER, from the very connection its COMMAND went to."""
        ref = message.fields['ref']
        relay = self.relays.get(ref)
        if relay is None or relay.node != node.name or relay.routing_id != routing_id:
            self.limited(out, 'stray-answer', 'dropped an ANSWER from node %s to a command '
                         'it was not sent (%s)' % (node.name, ref), now)
            return
        relay.ack_by = None
        answer, done = protocol.kept_answer(message.fields['answer']), message.fields['done']
        if answer.pop('accepted', False) and not done:
            return                                  # the node heard it: now wait
        if done:
            del self.relays[ref]
        out.append(act.Reply(relay.number, answer, done))

    def _relays_due(self):
        """The nearest acknowledgement deadline, or now when an ANSWER could not be
        taken (None: nothing is awaited). A node's new connection is noticed by
        the aging tick, within a second."""
        if not self.relays:
            return None
        if self.requests.unreadable_answers:
            return 0.0
        times = [r.ack_by for r in self.relays.values() if r.ack_by is not None]
        return min(times) if times else None

    def _check_relays(self, now, out):
        """Commands that will get no more answers end, the operator told why."""
        unreadable = self.requests.unreadable_answers
        for ref, relay in list(self.relays.items()):
            why = self._relay_lost(relay, unreadable, now)
            if why is not None:
                del self.relays[ref]
                out.append(act.Reply(relay.number, requests.refused(why)))
                self._cancel(ref, relay, out)
        unreadable.clear()          # (the other connections had no command)

    def _relay_lost(self, relay, unreadable, now):
        """Why `relay` gets no more answers (None: it may)."""
        node = self.nodes.get(relay.node)
        if relay.ack_by is not None and now >= relay.ack_by:
            return 'node %s did not answer within %g s (%s)' % (
                relay.node, ACK_SECONDS, _last_seen(node, now))
        if node is None or self._state_of(node, now) == 'stale':
            return 'node %s went away (%s)' % (relay.node, _last_seen(node, now))
        if relay.routing_id in unreadable:
            return 'node %s sent an answer the master cannot take (%s)' % (
                relay.node, unreadable[relay.routing_id])
        if node.routing_id != relay.routing_id:
            return ('node %s connected to the master again: what it answered on its '
                    'last connection is lost' % relay.node)
        return None


def _last_seen(node, now):
    if node is None or node.seen_at is None:
        return 'never seen'
    return 'last seen %d s ago' % max(0, now - node.seen_at)
