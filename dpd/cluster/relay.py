"""How the client's policy relays operators' commands from the master to its
worker (SPEC 6.3, `dpd-ctl --node`).

A part of ClientPolicy (client.py), written apart so each reads alone. A
COMMAND is checked again here (it is input from the network), refused when
this node's file says `remote_commands: false`, acknowledged at once (so the
master knows the node heard it) and handed to the asker thread; what the
worker answers goes back as ANSWER messages, its log text in pieces the
master takes. CANCEL, or a new master, ends a relay.
"""
import logging

from .. import jsonfile, requests
from ..policy import log_action
from . import actions as act
from . import protocol

MAX_RELAYS = 16           # commands in flight at once on this node
ANSWER_TEXT = 256 << 10   # the most log text in one ANSWER, as JSON writes it (the
                          # master takes 1 MiB: protocol.MAX_JSON_BYTES)


class Relaying:
    def _on_command(self, message, now, out):
        ref = message.fields['ref']
        refusal = self._relay_refusal(ref)
        if refusal is not None:
            self._answer(out, ref, refusal, done=True)
            return
        try:
            request = requests.parse(message.fields['request'])
        except requests.BadRequest as err:
            self._answer(out, ref, requests.bad_usage(str(err)), done=True)
            return
        self.relays[ref] = self.epoch
        out.append(log_action(logging.INFO, 'the master relays dpd-ctl %s %s' % (
            request.command, ' '.join(request.names))))
        out.append(act.AskWorker(ref, request.as_json(node=False)))
        self._answer(out, ref, requests.done(accepted=True), done=False)

    def _relay_refusal(self, ref):
        if not self.config.remote_commands:
            return requests.refused('node %s refuses remote commands (remote_commands: false '
                                    'in its client file)' % self.node)
        if ref in self.relays:
            return requests.refused('command %s is under way already' % ref)
        if len(self.relays) >= MAX_RELAYS:
            return requests.refused('node %s has %d commands in flight already'
                                    % (self.node, MAX_RELAYS))
        return None

    def _on_cancel(self, message, now, out):
        ref = message.fields['ref']
        if ref in self.relays:
            del self.relays[ref]
            out.append(act.CancelAsk(ref))

    def _on_worker_answered(self, event, now, out):
        if event.ref not in self.relays:
            return                                  # cancelled meanwhile
        if event.done:
            del self.relays[event.ref]
        self._answer(out, event.ref, event.answer, event.done)

    def _cancel_relays_of_old_masters(self, out):
        """A new master (epoch) knows nothing of the last one's commands."""
        for ref, epoch in list(self.relays.items()):
            if epoch != self.epoch:
                del self.relays[ref]
                out.append(act.CancelAsk(ref))

    def _answer(self, out, ref, answer, done):
        """`answer` as ANSWERs: its log text cut in pieces of at most ANSWER_TEXT,
        the last with the answer's other fields and `done`. A worker's backlog
        (up to 16 MiB) in one ANSWER was more than the master takes: dropped, and
        the operator's dpd-ctl waited for ever."""
        text = answer.get('text')
        if isinstance(text, str):
            *pieces, last = text_pieces(text, ANSWER_TEXT)
            for piece in pieces:
                self._send(out, protocol.answer(self.node, ref, requests.done(text=piece),
                                                False))
            answer = dict(answer, text=last)
        self._send(out, protocol.answer(self.node, ref, answer, done))


def text_pieces(text, limit):
    """`text` in pieces that JSON (ASCII only) writes in at most `limit` bytes each.
    An escape takes up to 6 bytes a character, 12 for one beyond the BMP: a piece
    is sized by what it takes written, then cut in proportion until it fits."""
    pieces, start = [], 0
    while True:
        end = min(len(text), start + limit)
        size = _written(text[start:end])
        while size > limit:
            end = start + max(1, (end - start) * limit // size)
            size = _written(text[start:end])
        pieces.append(text[start:end])
        start = end
        if start >= len(text):
            return pieces


def _written(text):
    return len(jsonfile.dumps(text)) - 2            # without its quotes
