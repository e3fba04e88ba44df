"""The wire format between dpd-masterd and dpd-clientd (pure; see "The protocol" in README).

Two endpoints; a client connects to the second only (one connection per node):

  master_updates  master XPUB -> first-round clients' SUB, topics `N:<node>\\0`, `H\\0`
      [N:<node>\\0, NOTIFY, hdr]   the node's list changed: {v, node, gen, sha256, epoch}
      [H\\0, HUGZ, hdr]            heartbeat every hugz_ivl (2-10 s, hugz_interval):
                                   {v, epoch, hseq, hugz_ivl, report_ivl}
  master_stats    client DEALER <-> master ROUTER
      [HELLO, json]   client: {v, node, boot, version, applied: {gen, sha256} | null}
      [REPORT, json]  client: HELLO's fields + last_rejected, worker, processes, reason
      [STATE, hdr, body]  master: the node's whole list, only to that node (the
                      answer to a HELLO or REPORT, or pushed to the node's connection
                      on an edit); hdr {v, node, gen, sha256, len, epoch}; body =
                      canonical JSON list
      [ACK, json]        master: {v, node, gen, sha256, epoch, report_ivl}: you are in sync;
                         report every report_ivl (10-60 s, report_interval)
      [UNMANAGED, json]  master: {v, node, epoch}: not in the master file; keep your list
      [ERROR, json]      master: {v, code, text}
      [COMMAND, json]    master: {v, node, ref, request}: an operator's request (SPEC 6.3)
                         for this node's worker; `request` as dpd/requests.py says
      [CANCEL, json]     master: {v, node, ref}: the operator is gone; stop answering
      [ANSWER, json]     client: {v, node, ref, answer, done}: an answer to COMMAND `ref`
                         (log text comes in several, each at most 256 KiB as JSON
                         writes it; the last has done: true)

No list body ever travels on the updates socket (PUB cannot choose its
readers), so a node never receives another node's list or secrets; a
COMMAND goes to one node's connection, and its ANSWER is taken only from
that connection. Every
frame is bounded, frame counts are exact, JSON is strict; anything else is a
ProtocolError, which the receiver logs and drops.
"""
import hashlib
import re
import sys

from .. import jsonfile
from ..record import Record

VERSION = 1
MAX_FRAME_BYTES = 4 * 1024 * 1024          # a STATE body: a node's whole list
MAX_JSON_BYTES = 1024 * 1024               # a REPORT with a thousand processes
MAX_HEADER_BYTES = 4096
HUGZ_TOPIC = b'H\0'
NODE_PATTERN = re.compile(r'[A-Za-z0-9._@:-]{1,253}\Z')
SHA256_PATTERN = re.compile(r'[0-9a-f]{64}\Z')
REF_PATTERN = re.compile(r'[A-Za-z0-9._-]{1,64}\Z')
MAX_GEN = 2 ** 63 - 1
HUGZ_IVL = 2.0                             # the master's heartbeat, at least...
MAX_HUGZ_IVL = 10.0                        # ...and at most (each HUGZ says which)
HUGZ_PER_S = 100.0                         # HUGZ the master sends its fleet, at most
REPORT_IVL = 10.0                          # a client's report, +-20 %, at least...
MAX_REPORT_IVL = 60.0                      # ...and at most (the master's ACK says which)
REPORTS_PER_S = 50.0                       # what the master asks of its whole fleet


def report_interval(nodes):
    """How often each of `nodes` nodes reports when nothing changes: every 10 s up to
    500 nodes, then so that all of them send about REPORTS_PER_S (Nomad's clients
    scale their heartbeats the same way, 50 a second by default), at most every 60 s.
    A change is still reported within a second."""
    return min(MAX_REPORT_IVL, max(REPORT_IVL, nodes / REPORTS_PER_S))


def hugz_interval(nodes):
    """The master's heartbeat: every 2 s up to 200 nodes, then about HUGZ_PER_S a
    second to the whole fleet, at most every 10 s (a node's silence rule is 30 s)."""
    return min(MAX_HUGZ_IVL, max(HUGZ_IVL, nodes / HUGZ_PER_S))


def stale_after(report_ivl):
    """No report for that long: the node is stale (three reports missed, and 5 s)."""
    return 3 * report_ivl + 5
UPDATES, STATS = 'updates', 'stats'        # the two sockets, by their names in the plans


class ProtocolError(ValueError):
    def __init__(self, message, code='bad-request'):
        super().__init__(message)
        self.code = code            # what an ERROR answer says


class Message(Record):
    kind: str
    fields: dict
    body: bytes = None


def node_topic(node):
    return b'N:' + node.encode() + b'\0'


def body_of(entries):
    """The canonical bytes of a node's list, and their sha256."""
    body = jsonfile.dumps(list(entries)).encode()
    return body, hashlib.sha256(body).hexdigest()


def _json(fields):
    fields['v'] = VERSION
    return jsonfile.dumps_message(fields).encode()


# ------------------------------------------------------------------ encoders

def notify(node, gen, sha256, epoch):
    return [node_topic(node), b'NOTIFY', _json({'node': node, 'gen': gen, 'sha256': sha256,
                                                'epoch': epoch})]


def hugz(epoch, hseq, hugz_ivl, report_ivl):
    return [HUGZ_TOPIC, b'HUGZ', _json({'epoch': epoch, 'hseq': hseq, 'hugz_ivl': hugz_ivl,
                                        'report_ivl': report_ivl})]


def state(node, gen, sha256, body, epoch):
    return [b'STATE', _json({'node': node, 'gen': gen, 'sha256': sha256, 'len': len(body),
                             'epoch': epoch}), body]


def ack(node, gen, sha256, epoch, report_ivl):
    return [b'ACK', _json({'node': node, 'gen': gen, 'sha256': sha256, 'epoch': epoch,
                           'report_ivl': report_ivl})]


def unmanaged(node, epoch):
    return [b'UNMANAGED', _json({'node': node, 'epoch': epoch})]


def command(node, ref, request):
    return [b'COMMAND', _json({'node': node, 'ref': ref, 'request': request})]


def cancel(node, ref):
    return [b'CANCEL', _json({'node': node, 'ref': ref})]


def answer(node, ref, reply, done):
    return [b'ANSWER', _json({'node': node, 'ref': ref, 'answer': reply, 'done': done})]


def error(code, text):
    return [b'ERROR', _json({'code': code, 'text': text[:1000]})]


def hello(node, boot, version, applied):
    return [b'HELLO', _json({'node': node, 'boot': boot, 'version': version,
                             'applied': applied})]


def report(node, boot, version, applied, **more):
    return [b'REPORT', _json(dict(more, node=node, boot=boot, version=version,
                                  applied=applied))]


# ------------------------------------------------------------------ decoders

def _node(value):
    return isinstance(value, str) and NODE_PATTERN.match(value) is not None


def _sha(value):
    return isinstance(value, str) and SHA256_PATTERN.match(value) is not None


def _gen(value):
    return type(value) is int and 0 <= value <= MAX_GEN


def _text(value):
    return isinstance(value, str) and len(value) <= 256


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < 86400


# What a REPORT says of the node: every field typed and bounded, so the master
# keeps (and writes to its state file) nothing a peer shaped at will (SPEC 5.2).

def _optional(check):
    def optional(value):
        return value is None or check(value)
    optional.inner = check          # for _record_of, which checks a null itself
    return optional


def _int(value):
    return type(value) is int and -2 ** 63 <= value < 2 ** 63


def _seconds(value):
    return (type(value) is int or type(value) is float) and -1e12 < value < 1e12


def _long_text(value):
    return isinstance(value, str) and len(value) <= MAX_TEXT


def _record_of(checks):
    """A dict whose listed keys pass their checks; its other keys are dropped
    from it here (see SCHEMAS: a message keeps only what the protocol knows).
    The record's own fields are walked, not the list of all: a process of a
    REPORT may have fifteen, and says the six or so it has a value for; an
    optional field's null (a first-round client says them all) needs no call."""
    table = {key: (getattr(check, 'inner', check), hasattr(check, 'inner'))
             for key, check in checks.items()}
    required = tuple(key for key, (_, optional) in table.items() if not optional)
    lookup = table.get

    def check(value):
        if not isinstance(value, dict):
            return False
        for key in required:
            if key not in value:
                return False
        for key, field in value.items():
            known = lookup(key)
            if known is None:       # (rarely: walked again without them)
                return _dropped(value, table) and check(value)
            if field is None and known[1]:
                continue
            if not known[0](field):
                return False
        return True
    return check


def _dropped(record, known):
    """`record` without its keys not in `known` (the decoder's own dict, just
    parsed: nobody else holds it yet)."""
    for key in [key for key in record if key not in known]:
        del record[key]
    return True


def _list_of(check, limit):
    def check_list(value):
        if not isinstance(value, list) or len(value) > limit:
            return False
        for item in value:
            if not check(item):
                return False
        return True
    return check_list


MAX_TEXT = 1000
MAX_REPORTED_PROCESSES = 1000
STAMP = {'gen': _gen, 'sha256': _sha}             # a version a client has applied


def _stamp(value):
    """{gen, sha256}: what a client has applied (other keys dropped, as by _record_of)."""
    if not (isinstance(value, dict) and _gen(value.get('gen')) and _sha(value.get('sha256'))):
        return False
    return len(value) == 2 or _dropped(value, STAMP)


_version_stamp = _optional(_stamp)                # or null

REJECTION = {'gen': _optional(_gen), 'sha256': _optional(_sha), 'reason': _long_text}
WORKER = {'running': _optional(lambda v: type(v) is bool), 'pid': _optional(_int),
          'config_ok': _optional(lambda v: type(v) is bool),
          'config_loaded_at': _optional(_seconds),
          'errors': _optional(_list_of(_long_text, 10))}
LAST_EXIT = {'code': _optional(_int), 'signal': _optional(_int), 'at': _optional(_seconds),
             'oom': _optional(_text)}
PROCESS = {'name': lambda v: isinstance(v, str) and 0 < len(v) <= 128, 'state': _text,
           'pid': _optional(_int), 'restarts': _optional(_int), 'since': _optional(_seconds),
           'error': _optional(_long_text), 'last_exit': _optional(_record_of(LAST_EXIT)),
           'next_start': _optional(_seconds), 'restart': _optional(lambda v: type(v) is bool),
           'memory_bytes': _optional(_int), 'cpu_seconds': _optional(_seconds),
           'health': _optional(_text), 'health_error': _optional(_long_text),
           'status_text': _optional(_long_text),
           'waiting_for': _optional(_list_of(_text, 1000))}
PROCESS_FIELDS = tuple(PROCESS)        # what a REPORT may say of each process

# What an ANSWER may say (dpd/requests.py's answers): the master passes on no more.
MAX_RESULTS = 1000
RESULT = {'name': _text, 'pid': _optional(_int), 'error': _optional(_long_text)}
ANSWER = {'ok': lambda v: type(v) is bool, 'code': lambda v: v in (0, 1, 2, 3),
          'error': _optional(lambda v: isinstance(v, str) and len(v) <= 8 * MAX_TEXT),
          'text': _optional(lambda v: isinstance(v, str)),
          'accepted': _optional(lambda v: type(v) is bool),
          'results': _optional(_list_of(_record_of(RESULT), MAX_RESULTS))}


def _ref(value):
    return isinstance(value, str) and REF_PATTERN.match(value) is not None


def kept_answer(value):
    """A checked answer with only its known fields (and theirs)."""
    answer = {k: v for k, v in kept(value, ANSWER).items() if v is not None}
    if 'results' in answer:
        answer['results'] = [{k: v for k, v in kept(r, RESULT).items() if v is not None}
                             for r in answer['results']]
    return answer


def clipped(text):
    """`text` cut to what a REPORT may carry."""
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT - 3] + '...'


def kept(value, fields):
    """Only the known `fields` of a checked record, those it has (None stays None);
    a record of no other field (as our own peers send) is kept as it came."""
    if value is None or value.keys() <= fields.keys():
        return value
    return {k: v for k, v in value.items() if k in fields}


SHARED_WORDS = ('name', 'state', 'health')      # a process's fields that repeat across nodes


def kept_process(value):
    """A decoded process of a REPORT (its unknown keys, and its `last_exit`'s,
    were dropped then), its words shared: a master keeps the last report of every
    node, and ten thousand nodes say "running" and their services' names forty
    thousand times (4 MB)."""
    for key in SHARED_WORDS:
        word = value.get(key)
        if word is not None:
            value[key] = sys.intern(word)
    return value


# kind -> (frames after the type frame, {key: check}). Keys not listed (a newer
# peer's additions) are accepted and dropped, at every level: nothing reads
# them, and a decoded message is held (RepeatedRequests), so junk kept in it cost
# the master 24 times its bytes. Dropped rather than refused, so an old master
# or client still takes a newer peer's messages; dropped rather than merely not
# remembered, so a newer client's reports are still remembered, and one that
# pads its messages costs no more than one that does not.
SCHEMAS = {
    'NOTIFY': (1, {'node': _node, 'gen': _gen, 'sha256': _sha, 'epoch': _text}),
    'HUGZ': (1, {'epoch': _text, 'hseq': _gen, 'hugz_ivl': _number, 'report_ivl': _number}),
    'STATE': (2, {'node': _node, 'gen': _gen, 'sha256': _sha, 'len': _gen, 'epoch': _text}),
    'ACK': (1, {'node': _node, 'gen': _gen, 'sha256': _sha, 'epoch': _text,
                'report_ivl': _number}),
    'UNMANAGED': (1, {'node': _node, 'epoch': _text}),
    'ERROR': (1, {'code': _text, 'text': lambda v: isinstance(v, str)}),
    'HELLO': (1, {'node': _node, 'boot': _text, 'version': _text, 'applied': _version_stamp}),
    'REPORT': (1, {'node': _node, 'boot': _text, 'version': _text,
                   'applied': _version_stamp, 'reason': _optional(_text),
                   'last_rejected': _optional(_record_of(REJECTION)),
                   'worker': _optional(_record_of(WORKER)),
                   'processes': _optional(_list_of(_record_of(PROCESS),
                                                   MAX_REPORTED_PROCESSES))}),
    'COMMAND': (1, {'node': _node, 'ref': _ref, 'request': lambda v: isinstance(v, dict)}),
    'CANCEL': (1, {'node': _node, 'ref': _ref}),
    'ANSWER': (1, {'node': _node, 'ref': _ref, 'done': lambda v: type(v) is bool,
                   'answer': _record_of(ANSWER)}),
}
# kind -> (frames, ((key, check, optional), ...), the keys kept): SCHEMAS as _decode
# walks it (as in _record_of, an optional field's null needs no call)
HEADERS = {kind: (count, tuple((key, getattr(check, 'inner', check), hasattr(check, 'inner'))
                               for key, check in checks.items()), frozenset(checks) | {'v'})
           for kind, (count, checks) in SCHEMAS.items()}
UPDATE_KINDS = ('NOTIFY', 'HUGZ')
REPLY_KINDS = ('STATE', 'ACK', 'UNMANAGED', 'ERROR', 'COMMAND', 'CANCEL')
REQUEST_KINDS = ('HELLO', 'REPORT', 'ANSWER')


def decode_update(frames):
    """[topic, type, hdr] from the SUB socket."""
    if len(frames) < 2:
        raise ProtocolError('%d frames, expected 3' % len(frames))
    message = _decode(frames[1:], UPDATE_KINDS)
    expected = HUGZ_TOPIC if message.kind == 'HUGZ' else node_topic(message.fields['node'])
    if frames[0] != expected:
        raise ProtocolError('%s on topic %r' % (message.kind, bytes(frames[0][:64])))
    return message


def decode_reply(frames):
    """[type, ...] from the DEALER socket."""
    return _decode(frames, REPLY_KINDS)


def decode_request(frames):
    """[type, json] from the ROUTER socket, without the routing id."""
    return _decode(frames, REQUEST_KINDS)


class RepeatedRequests:
    """decode_request, remembered for each connection's last request: an idle
    node's REPORT repeats its last one byte for byte (same list, same processes),
    and parsing and checking it again was the largest part of an idle master's
    CPU. Only the exact bytes hit (a digest of them), so what is returned is
    what decode_request would return, the very same Message each time (nobody
    changes a Message); the answer is made fresh from it.

    Bounded, since a peer may open many connections (one stolen node key is
    enough: a request is decoded before its node is checked): only a request
    of at most REMEMBERED_BYTES and REMEMBERED_VALUES (an idle node of a dozen
    processes or so) is kept, for at most `limit` connections, the least
    recently heard forgotten first. What is kept is what the protocol knows of
    it (unknown keys are dropped when decoding). Values are counted as well as
    bytes: a value costs 60-100 bytes once decoded, however short on the wire,
    so a request of many tiny ones (a list of two-letter names) cost 12 times
    its bytes, twice what an idle node's report costs.

    It also keeps which connections sent an ANSWER that could not be taken (too
    large, malformed), and why: the command it answered gets no answer now, and
    the master's policy ends that connection's relays with that reason
    (remote.py) rather than leave the operator waiting."""
    REMEMBERED_BYTES = 4096
    REMEMBERED_VALUES = 256             # commas: some 25 processes of ten fields
    UNREADABLE_KEPT = 256               # connections whose refused ANSWER is kept

    def __init__(self, limit):
        self.limit = limit
        self._last = {}                 # routing id -> (digest of the frames, Message)
        self.unreadable_answers = {}    # routing id -> why its ANSWER was refused

    def decode(self, routing_id, frames):
        try:
            return self._decode(routing_id, frames)
        except ProtocolError as err:
            if frames and bytes(frames[0][:16]) == b'ANSWER':
                self._unreadable(routing_id, str(err))
            raise

    def _unreadable(self, routing_id, why):
        self.unreadable_answers.pop(routing_id, None)
        self.unreadable_answers[routing_id] = why[:MAX_TEXT]
        while len(self.unreadable_answers) > self.UNREADABLE_KEPT:
            del self.unreadable_answers[next(iter(self.unreadable_answers))]

    def _decode(self, routing_id, frames):
        last = self._last.pop(routing_id, None)
        if sum(map(len, frames)) > self.REMEMBERED_BYTES:
            return decode_request(frames)
        digest = _digest(frames)
        if last is not None and last[0] == digest:
            message = last[1]
        else:
            message = decode_request(frames)         # raises ProtocolError
            if frames[-1].count(b',') > self.REMEMBERED_VALUES:
                return message
        self._last[routing_id] = (digest, message)
        while len(self._last) > self.limit:
            del self._last[next(iter(self._last))]
        return message


def _digest(frames):
    digest = hashlib.blake2b(digest_size=16)
    for frame in frames:
        digest.update(len(frame).to_bytes(8, 'big'))
        digest.update(frame)
    return digest.digest()


def _decode(frames, allowed):
    if not frames:
        raise ProtocolError('empty message')
    kind = bytes(frames[0][:16]).decode('ascii', 'replace')
    if kind not in allowed:
        raise ProtocolError('unexpected message type %r' % kind)
    count, walk, known = HEADERS[kind]
    if len(frames) != count + 1:
        raise ProtocolError('%s with %d frames, expected %d' % (kind, len(frames), count + 1))
    limit = MAX_HEADER_BYTES if kind in ('STATE', 'NOTIFY', 'HUGZ') else MAX_JSON_BYTES
    fields = _strict_object(frames[1], limit, kind)
    if type(fields.get('v')) is not int or fields['v'] != VERSION:
        raise ProtocolError('%s of protocol version %r; this end speaks %d'
                            % (kind, fields.get('v'), VERSION), 'unsupported-version')
    for key, check, optional in walk:
        value = fields.get(key)
        if value is None and optional:
            continue
        if not check(value):
            raise ProtocolError('%s: bad or missing %r' % (kind, key))
    if not known.issuperset(fields):
        _dropped(fields, known)
    body = None
    if kind == 'STATE':
        body = bytes(frames[2])
        if len(body) != fields['len'] or len(body) > MAX_FRAME_BYTES:
            raise ProtocolError('STATE body of %d bytes, header says %d' % (len(body),
                                                                              fields['len']))
        if hashlib.sha256(body).hexdigest() != fields['sha256']:
            raise ProtocolError('STATE body does not match its sha256')
    return Message(kind, fields, body)


def _strict_object(frame, limit, kind):
    if len(frame) > limit:
        raise ProtocolError('%s header of %d bytes (limit %d)' % (kind, len(frame), limit))
    try:
        value = jsonfile.loads_message(bytes(frame))
    except jsonfile.JsonError as err:
        raise ProtocolError('%s: %s' % (kind, err)) from None
    if not isinstance(value, dict):
        raise ProtocolError('%s: not a JSON object' % kind)
    return value


def decode_body(body):
    """The node's list from a STATE body: a JSON list (its entries checked later)."""
    try:
        entries = jsonfile.loads(body)
    except jsonfile.JsonError as err:
        raise ProtocolError('STATE body: %s' % err) from None
    if not isinstance(entries, list):
        raise ProtocolError('STATE body is not a list')
    return entries
