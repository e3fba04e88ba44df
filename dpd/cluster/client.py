"""The client's policy: keep the local worker file equal to the master's list.

Pure: `handle(event, now)` returns actions. Fail static: nothing the client
does when the master is silent or gone changes the worker file; only a
valid, newer list for this very node does, after the worker's own rules and
the local `allowed_users` policy accepted it.

"applied" is what the worker file really holds: the (gen, sha256, epoch)
recorded in its `_diprocd` key when its `procs` still hash to that sha256; a
file edited by hand since holds an unknown gen, so the master's list replaces
it. Gens order the lists of one master (one epoch): a STATE older than what
that same master's list already applied is stale. A new master (another
epoch) is the truth now, whatever its gens: so a master that lost its state,
or a node that holds a huge gen, never wedges anything (SPEC 5.2).
"""
import logging
import random

from .. import __version__
from ..policy import log_action
from ..procspec import parse_process_list
from ..schema import Problems
from . import actions as act
from . import events as ev
from . import protocol
from .linkwatch import LINK_PROBLEMS, DroppedLinks
from .policy import NetworkPolicy
from .protocol import MAX_REPORT_IVL, REPORT_IVL, STATS
from .relay import Relaying

HELLO_RETRY = 2.0          # until the master answers
UNANSWERED = 10.0          # a question, or a dropped connection, unanswered that long:
                           # the master is unreachable (an informational status)
SILENCE_REBUILD = 30.0     # no message at all that long: re-create the connection
REPORT_SOON = 1.0          # a local change is reported within this delay
USAGE_FIELDS = ('memory_bytes', 'cpu_seconds')   # sampled often: they wait for a report


def accepted_users_problems(entries, allowed_users):
    """The local policy: which users (and groups) this node runs for the master."""
    problems = Problems()
    allowed = set(allowed_users) if allowed_users is not None else None
    for index, entry in enumerate(entries):
        if problems.over:
            break
        for key in ('user', 'group'):
            account = entry.get(key, 'nobody' if key == 'user' else None)
            if account is None:
                continue
            where = 'procs[%d] ("%s").%s' % (index, entry.get('name'), key)
            if allowed is None and account == 'root':
                problems.add(where, 'root is accepted only when this node\'s allowed_users '
                             'lists it')
            elif allowed is not None and account not in allowed:
                problems.add(where, '%s is not in this node\'s allowed_users' % account)
    return problems.messages


class ClientPolicy(Relaying, NetworkPolicy):
    crash_note = 'the worker file stays as it is'

    def __init__(self, config, node, boot, rng=None):
        super().__init__({
            ev.LinkMessage: self._on_message, ev.LinkEvent: self._on_link_event,
            ev.WorkerObserved: self._on_worker, ev.WorkerFileWritten: self._on_written,
            ev.WorkerFileRefused: self._on_refused, ev.ConfigLoaded: self._on_config,
            ev.WorkerAnswered: self._on_worker_answered,
            ev.ConfigRejected: self._on_config_rejected, ev.SignalReceived: self.on_signal,
            ev.ThreadCrashed: self.on_thread_crashed, ev.Tick: self._on_tick,
        })
        self.config, self.node, self.boot = config, node, boot
        self.rng = rng or random.Random()
        self.applied = None            # {gen, sha256, epoch} the worker file holds
        self.worker = {}               # what the worker's state file says
        self.processes = ()
        self.last_rejected = None      # {gen, sha256, reason}
        self.status = 'connecting'
        self.epoch = None              # the master's, from its last message
        self.heard_at = None           # last message from the master
        self.quiet_since = None        # the last message, or the last rebuild
        self.asked_at = None           # the oldest question (or drop) not answered since
        self.connected = False         # the connection's handshake is done, and it holds
        self.writing = None            # (gen, sha256) being written
        self.written_at = None         # when the last write was done
        self.hello_at = self.report_at = None
        self.started_at = None
        self.relays = {}               # ref -> the master epoch that asked (relay.py)
        self.report_ivl = REPORT_IVL   # as the master's last ACK says
        self.changed = False           # the next report says a change
        self.links = DroppedLinks()    # connections libzmq dropped for good
        self._messages = {'ACK': self._on_ack,
                          'STATE': self._on_state, 'UNMANAGED': self._on_unmanaged,
                          'ERROR': self._on_error, 'COMMAND': self._on_command,
                          'CANCEL': self._on_cancel}

    def handle(self, event, now):
        if self.started_at is None:   # the first fact starts the clocks
            self.started_at = self.quiet_since = now
            self.report_at = now + self._report_interval()
        return super().handle(event, now)

    def next_deadline(self):
        deadlines = [d for d in (self.hello_at, self.report_at, self._rebuild_at(),
                                 self._unreachable_at(), self.links.due()) if d is not None]
        return min(deadlines) if deadlines else None

    def _rebuild_at(self):
        """30 s without a word: the master answers each report (every ~10 s, longer
        if it asks for fewer: the silence allowed grows with the interval)."""
        if self.quiet_since is None:
            return None
        return self.quiet_since + self._silence()

    def _silence(self):
        return SILENCE_REBUILD + 1.2 * (self.report_ivl - REPORT_IVL)

    def _unreachable_at(self):
        """A question, or a dropped connection, unanswered for UNANSWERED seconds
        (a master that restarts in that time is never called unreachable)."""
        if self.heard_at is None or self.asked_at is None or self.status == 'unreachable':
            return None
        return self.asked_at + UNANSWERED

    # ------------------------------------------------------------ from the master

    def _on_message(self, event, now, out):
        try:
            message = protocol.decode_reply(event.frames)
        except protocol.ProtocolError as err:
            self.limited(out, 'bad', 'dropped a bad message from the master: %s' % err, now)
            return
        if message.fields.get('node', self.node) != self.node:
            self.limited(out, 'other-node', 'dropped a %s for node %s (this is %s)'
                          % (message.kind, message.fields['node'], self.node), now, logging.ERROR)
            return
        self._heard(message.fields.get('epoch'), now, out)
        self._messages[message.kind](message, now, out)

    def _heard(self, epoch, now, out):
        """Any message answers: it is the reply to a HELLO or a REPORT, or one the
        master sends on the connection that last spoke to it."""
        if self.status == 'unreachable':
            out.append(log_action(logging.INFO, 'the master answers again'))
            self.status, self.dirty = 'connecting', True
        self.heard_at = self.quiet_since = now
        self.hello_at = self.asked_at = None
        self.links.heard(STATS)
        if epoch and epoch != self.epoch:
            if self.epoch is not None:
                out.append(log_action(logging.INFO, 'the master restarted (epoch %s)' % epoch))
            self.epoch = epoch
            self._cancel_relays_of_old_masters(out)

    def _on_ack(self, message, now, out):
        self.report_ivl = min(MAX_REPORT_IVL, max(REPORT_IVL, message.fields['report_ivl']))
        if self._holds(message.fields['sha256']):
            self._set_status('in-sync', out)

    def _on_unmanaged(self, message, now, out):
        self._set_status('unmanaged', out, 'not in the master file: keeping the current '
                         'worker file')

    def _on_error(self, message, now, out):
        self.limited(out, 'error', 'the master says: %s (%s)'
                      % (message.fields['text'], message.fields['code']), now, logging.ERROR)
        self._set_status('master-error', out)

    def _on_state(self, message, now, out):
        gen, sha256 = message.fields['gen'], message.fields['sha256']
        applied = self.applied or {}
        if self._holds(sha256):
            self._set_status('in-sync', out)
            return
        if self._refused(gen, sha256) or self.writing == (gen, sha256):
            return
        if applied.get('gen', 0) and applied.get('epoch') == message.fields['epoch'] \
                and gen <= applied['gen']:
            self.limited(out, 'old-gen', 'ignored list version %d: version %d is applied'
                          % (gen, applied['gen']), now)
            self._report_soon(now)
            return
        entries, problems = self._check(message.body)
        if problems:
            self._reject(gen, sha256, problems, now, out)
            return
        self.writing = (gen, sha256)
        out.append(act.WriteWorkerFile(entries, {'gen': gen, 'sha256': sha256,
                                                 'epoch': self.epoch}))

    def _check(self, body):
        """(entries, every reason to refuse them): the worker's rules, then the local
        policy."""
        try:
            entries = protocol.decode_body(body)
        except protocol.ProtocolError as err:
            return None, [str(err)]
        problems = Problems()
        parse_process_list(entries, 'procs', problems, 'nobody')
        if problems:
            return entries, problems.messages
        return entries, accepted_users_problems(entries, self.config.allowed_users)

    def _reject(self, gen, sha256, problems, now, out):
        reason = problems[0] + (' (and %d more)' % (len(problems) - 1) if len(problems) > 1
                                else '')
        self.last_rejected = {'gen': gen, 'sha256': sha256, 'reason': reason}
        for problem in problems:
            out.append(log_action(logging.ERROR, 'list version %d refused: %s' % (gen, problem)))
        out.append(log_action(logging.ERROR, 'the worker file is left as it is'))
        self._set_status('rejected', out)
        self._report_soon(now)

    def _holds(self, sha256):
        return (self.applied or {}).get('sha256') == sha256

    def _refused(self, gen, sha256):
        rejected = self.last_rejected or {}
        return rejected.get('sha256') == sha256 and rejected.get('gen') == gen

    # ------------------------------------------------------------ the worker file

    def _on_written(self, event, now, out):
        self.writing = None
        self.written_at = now
        self.applied = dict(event.record)
        out.append(log_action(logging.INFO, 'applied list version %d to %s'
                              % (self.applied['gen'], self.config.conf_file)))
        self._set_status('in-sync', out)
        self._report_soon(now, at_once=True)

    def _on_refused(self, event, now, out):
        gen, sha256 = self.writing or (None, None)
        self.writing = None
        self._reject(gen, sha256, list(event.reasons), now, out)

    def _on_worker(self, event, now, out):
        applied = event.applied
        if applied != self.applied and not self._read_before_write(event):
            if self.applied is not None and applied and applied.get('gen') == 0:
                out.append(log_action(logging.WARNING, '%s was edited by hand; the master\'s list '
                                      'will replace it' % self.config.conf_file))
            self.applied = applied
            self._report_soon(now)
        if (event.worker, event.processes) != (self.worker, self.processes):
            # memory and CPU change at every sample of the worker: alone, they ride
            # on the next periodic report (a thousand nodes would report every 15 s)
            if event.worker != self.worker or _states(event.processes) != \
                    _states(self.processes):
                self._report_soon(now)
            self.worker, self.processes = event.worker, event.processes
        self.dirty = True

    def _read_before_write(self, event):
        """The observer may have read the file just before our own write landed; its
        `applied` is then older than ours and must not undo it."""
        return None not in (event.read_at, self.written_at) and \
            event.read_at < self.written_at

    # ------------------------------------------------------------ timers, signals

    def _on_tick(self, event, now, out):
        if self.hello_at is not None and now >= self.hello_at:
            self._ask(out, protocol.hello(self.node, self.boot, __version__, self._stamp()), now)
            self.hello_at = now + HELLO_RETRY
        if self.report_at is not None and now >= self.report_at:
            self._ask(out, self._report(), now)
            self.report_at = now + self._report_interval(self.changed)
            self.changed = False
        if now >= self._rebuild_at():
            self._silent_for_long(now, out)
        dead_at = self.links.due()
        if dead_at is not None and now >= dead_at:
            self.limited(out, 'dropped', 'the master\'s connection on %s was dropped and is not '
                         'being made again (an oversize or malformed frame?): re-creating the '
                         'connections' % ' and '.join(sorted(self.links.dropped)), now)
            self._rebuild(now, out)
        unreachable_at = self._unreachable_at()
        if unreachable_at is not None and now >= unreachable_at:
            self._set_status('unreachable', out, 'no word from the master for %d s; the worker '
                             'file stays as it is' % (now - self.heard_at))

    def _silent_for_long(self, now, out):
        self.limited(out, 'silence', 'no word from the master for %d s: re-creating the '
                     'connection' % (now - self.quiet_since), now)
        self._rebuild(now, out)
        if self.heard_at is None:
            self._set_status('unreachable', out)

    def _rebuild(self, now, out):
        """A new connection; its handshake says HELLO (_on_link_event)."""
        out.append(act.RebuildLink())
        self.quiet_since = now
        self.links.rebuilt(now)
        self.hello_at = None

    def _report(self):
        return protocol.report(self.node, self.boot, __version__, self._stamp(),
                               last_rejected=self.last_rejected, worker=self.worker,
                               processes=self.processes, reason=self.status)

    def _stamp(self):
        return {'gen': self.applied['gen'], 'sha256': self.applied['sha256']} \
            if self.applied else None

    def _report_interval(self, after_change=False):
        """The next periodic report, +-20 %; after a report of a change, anywhere in
        the next 0.2-1.2 intervals: a fleet-wide edit makes every node report at
        once, and their periodic reports would stay in step, a wave every interval."""
        return self.report_ivl * self.rng.uniform(0.2 if after_change else 0.8, 1.2)

    def _report_soon(self, now, at_once=False):
        soon = now if at_once else now + REPORT_SOON
        self.report_at = min(self.report_at or soon, soon)
        self.changed = True

    def _ask(self, out, frames, now):
        """A HELLO or a REPORT: each gets an answer."""
        if self.asked_at is None:
            self.asked_at = now
        self._send(out, frames)

    def _send(self, out, frames):
        out.append(act.Send(STATS, tuple(frames)))

    def _on_link_event(self, event, now, out):
        """Each new connection says HELLO once its handshake is done: to a master
        that restarted it is the first word, and it names the connection to answer
        on. While the connection is down, no HELLO is queued behind it."""
        self.links.on_event(event, now)
        kind = event.kind
        dropped = event.socket == STATS and kind == 'disconnected'
        if event.socket == STATS and kind == 'handshake-ok':
            self.connected, self.hello_at = True, now
        elif dropped or kind == 'rebuilt':
            self.connected, self.hello_at = False, None
        if dropped and self.asked_at is None:
            self.asked_at = now              # a drop is a question: is the master there?
        if kind == 'handshake-failed' and self.config.secret_key is None:
            kind = 'handshake-protocol'   # no key of ours to get wrong: the master has keys
        message = LINK_PROBLEMS.get(kind)
        if message:
            self.limited(out, kind + event.socket, message % {
                'socket': event.socket, 'detail': event.detail.strip()}, now, logging.ERROR)

    def _on_config(self, event, now, out):
        self.config, self.dirty = event.config, True
        self.last_rejected = None   # allowed_users may have changed: judge the list again
        if self.connected:          # (else the next connection's handshake says HELLO)
            self.hello_at = now

    def _on_config_rejected(self, event, now, out):
        for message in event.messages:
            out.append(log_action(logging.ERROR, message))
        out.append(log_action(logging.ERROR, 'client configuration rejected; keeping the '
                              'current one'))

    def _set_status(self, status, out, message=None):
        if status != self.status:
            if message:
                out.append(log_action(logging.WARNING, message))
            self.status, self.dirty = status, True

    def snapshot(self, now):
        return {
            'node': self.node, 'status': self.status, 'applied': self.applied,
            'last_rejected': self.last_rejected, 'master_epoch': self.epoch,
            'heard_at': self.heard_at,
            'conf_file': self.config.conf_file, 'master_stats': self.config.master_stats,
            'master_updates': self.config.master_updates,
        }


def _states(processes):
    """The processes as a report says them, but for their usage figures."""
    return [{k: v for k, v in p.items() if k not in USAGE_FIELDS} if isinstance(p, dict)
            else p for p in processes]
