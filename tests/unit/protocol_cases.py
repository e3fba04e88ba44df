"""What the wire-format and network-policy tests share: lists, valid messages of
every kind, and the fuzzing strategies."""
import hashlib
import json

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from dpd.cluster import protocol
from dpd.cluster.protocol import MAX_GEN, ProtocolError

SHA = 'ab' * 32
FUZZ = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def raw(fields):
    """A JSON frame exactly as given (no `v` added), for hand-made headers."""
    return json.dumps(fields, separators=(',', ':')).encode()


def proc(name, **keys):
    return dict({'name': name, 'run': '/bin/sleep', 'args': ['100']}, **keys)


LIST_A = [proc('a')]
LIST_B = [proc('a'), proc('b')]
LIST_C = [proc('c')]


def stamp(entries, gen, epoch='e1'):
    """What a client's worker file records it applied: {gen, sha256, epoch} of
    `entries` (epoch 'e1': the master these tests play)."""
    return {'gen': gen, 'sha256': protocol.body_of(entries)[1], 'epoch': epoch}


def state_frames(node='web1', gen=5, entries=LIST_A, epoch='e1'):
    body, sha = protocol.body_of(entries)
    return protocol.state(node, gen, sha, body, epoch)


def valid_messages():
    """One valid message of every kind: (decoder, frames)."""
    body, sha = protocol.body_of(LIST_A)
    applied = {'gen': 7, 'sha256': sha}
    return [
        (protocol.decode_update, protocol.notify('web1', 7, sha, 'e1')),
        (protocol.decode_update, protocol.hugz('e1', 3, 2.0, 10.0)),
        (protocol.decode_reply, protocol.state('web1', 7, sha, body, 'e1')),
        (protocol.decode_reply, protocol.ack('web1', 7, sha, 'e1', 10.0)),
        (protocol.decode_reply, protocol.unmanaged('web1', 'e1')),
        (protocol.decode_reply, protocol.error('bad-request', 'no')),
        (protocol.decode_request, protocol.hello('web1', 'boot', '1.0', applied)),
        (protocol.decode_request, protocol.report('web1', 'boot', '1.0', None,
                                                  processes=[], last_rejected=None)),
    ]


def kind_of(frames, decoder):
    return frames[1] if decoder is protocol.decode_update else frames[0]


def json_index(frames, decoder):
    """Where the JSON header sits in a message's frames."""
    return 2 if decoder is protocol.decode_update else 1


def with_header(frames, decoder, **changes):
    """The message with header fields changed (a value of DROP removes the key)."""
    index = json_index(frames, decoder)
    fields = json.loads(frames[index])
    for key, value in changes.items():
        if value is DROP:
            fields.pop(key, None)
        else:
            fields[key] = value
    frames = list(frames)
    frames[index] = raw(fields)
    return frames


class _Drop:
    def __repr__(self):
        return 'DROP'


DROP = _Drop()     # a header key to remove


# ============================================================ property-based

frame = st.binary(max_size=300)
json_value = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-2 ** 70, max_value=2 ** 70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12)
KINDS = [b'NOTIFY', b'HUGZ', b'STATE', b'ACK', b'UNMANAGED', b'ERROR', b'HELLO', b'REPORT',
         b'X']
TOPICS = [b'N:web1\0', b'N:web10\0', b'H\0', b'', b'N:\0']
DECODERS = [protocol.decode_update, protocol.decode_reply, protocol.decode_request]


def only_protocol_errors(frames):
    """Every decoder on `frames`: a Message that satisfies the protocol, or ProtocolError."""
    for decoder in DECODERS:
        try:
            message = decoder(frames)
        except ProtocolError:
            continue
        check_message(decoder, frames, message)


def check_message(decoder, frames, message):
    """What a decoded message guarantees to whoever acts on it."""
    assert message.fields.get('v') == protocol.VERSION
    if decoder is protocol.decode_update:
        assert message.kind in protocol.UPDATE_KINDS and len(frames) == 3
        assert bytes(frames[0]) == (protocol.HUGZ_TOPIC if message.kind == 'HUGZ'
                                    else protocol.node_topic(message.fields['node']))
    elif decoder is protocol.decode_reply:
        assert message.kind in protocol.REPLY_KINDS
    else:
        assert message.kind in protocol.REQUEST_KINDS
    if message.kind == 'STATE':
        assert hashlib.sha256(message.body).hexdigest() == message.fields['sha256']
        assert len(message.body) == message.fields['len'] <= protocol.MAX_FRAME_BYTES
    checked = protocol.SCHEMAS[message.kind][1]     # other keys are dropped
    assert set(message.fields) <= set(checked) | {'v'}
    if 'gen' in checked:
        gen = message.fields['gen']
        assert type(gen) is int and 0 <= gen <= MAX_GEN
    if 'node' in checked:
        assert protocol.NODE_PATTERN.match(message.fields['node'])


def mutate(frames, data):
    """One random change to a valid message: bytes flipped, cut, inserted; frames
    dropped, duplicated, swapped, emptied."""
    frames = [bytes(f) for f in frames]
    how = data.draw(st.sampled_from(['flip', 'cut', 'insert', 'drop', 'dup', 'swap', 'empty',
                                     'replace']))
    i = data.draw(st.integers(0, len(frames) - 1))
    f = frames[i]
    if how == 'flip' and f:
        j = data.draw(st.integers(0, len(f) - 1))
        frames[i] = f[:j] + bytes([f[j] ^ data.draw(st.integers(1, 255))]) + f[j + 1:]
    elif how == 'cut':
        frames[i] = f[:data.draw(st.integers(0, len(f)))]
    elif how == 'insert':
        j = data.draw(st.integers(0, len(f)))
        frames[i] = f[:j] + data.draw(st.binary(min_size=1, max_size=20)) + f[j:]
    elif how == 'drop':
        del frames[i]
    elif how == 'dup':
        frames.insert(i, f)
    elif how == 'swap':
        j = data.draw(st.integers(0, len(frames) - 1))
        frames[i], frames[j] = frames[j], frames[i]
    elif how == 'empty':
        frames[i] = b''
    else:
        frames[i] = data.draw(st.binary(max_size=50))
    return frames
