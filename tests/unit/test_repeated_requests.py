"""protocol.RepeatedRequests: a request that repeats its connection's last one byte
for byte is not decoded again; anything else is, exactly as decode_request does."""
import pytest

from dpd.cluster import protocol

APPLIED = {'gen': 3, 'sha256': 'a' * 64}


def report(node='n1', **more):
    return tuple(protocol.report(node, 'boot-1', '1.0', APPLIED, **more))


@pytest.fixture
def decoded(monkeypatch):
    """The frames decode_request really parsed."""
    calls = []
    real = protocol.decode_request

    def counted(frames):
        calls.append(tuple(frames))
        return real(frames)
    monkeypatch.setattr(protocol, 'decode_request', counted)
    return calls


def test_a_repeated_report_is_decoded_once_and_gives_the_same_message(decoded):
    requests = protocol.RepeatedRequests(10)
    first = requests.decode(b'c1', report())
    assert all(requests.decode(b'c1', report()) is first for _ in range(5))
    assert len(decoded) == 1
    assert first == protocol.decode_request(report())


def test_a_changed_report_or_another_connection_is_decoded_again(decoded):
    requests = protocol.RepeatedRequests(10)
    requests.decode(b'c1', report())
    changed = requests.decode(b'c1', report(reason='changed'))
    assert changed.fields['reason'] == 'changed'
    requests.decode(b'c2', report())                  # same bytes, another connection
    requests.decode(b'c1', report())                  # c1's last one was the changed one
    assert len(decoded) == 4


def test_frames_split_differently_are_not_the_same_request(decoded):
    requests = protocol.RepeatedRequests(10)
    kind, body = report()
    requests.decode(b'c1', (kind, body))
    with pytest.raises(protocol.ProtocolError):
        requests.decode(b'c1', (kind + body[:1], body[1:]))
    with pytest.raises(protocol.ProtocolError):
        requests.decode(b'c1', (kind, body, b''))


def test_a_bad_request_is_refused_every_time(decoded):
    requests = protocol.RepeatedRequests(10)
    bad = (b'REPORT', b'{"v": 1, "node": 7}')
    for _ in range(3):
        with pytest.raises(protocol.ProtocolError):
            requests.decode(b'c1', bad)
    assert len(decoded) == 3


def test_only_the_last_connections_are_remembered(decoded):
    requests = protocol.RepeatedRequests(2)
    for connection in (b'c1', b'c2', b'c3'):
        requests.decode(connection, report())
    requests.decode(b'c3', report())                   # remembered
    requests.decode(b'c1', report())                   # forgotten: the oldest of three
    assert len(decoded) == 4


def test_a_large_request_is_not_kept(decoded):
    """A peer's many connections must not make the master hold their big reports."""
    requests = protocol.RepeatedRequests(10)
    processes = [dict(dict.fromkeys(protocol.PROCESS_FIELDS), name='p%d' % i, state='running',
                      pid=1000 + i, restarts=0, since=1.5, restart=True) for i in range(40)]
    big = report(processes=processes)
    assert sum(map(len, big)) > protocol.RepeatedRequests.REMEMBERED_BYTES
    for _ in range(3):
        assert len(requests.decode(b'c1', big).fields['processes']) == 40
    assert len(decoded) == 3
    assert requests._last == {}
