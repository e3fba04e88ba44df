"""The master's metrics endpoint: what each request head gets (dpd.cluster.httpd)."""
import socket
import time

import pytest

from dpd import acceptpause
from dpd.cluster import httpd
from dpd.cluster.httpd import MetricsServer, answer_to, listen
from support import OutOfDescriptors, wait_until

TEXT = b'diprocd_config_load_success 1\n'


def status(head, body=TEXT):
    answer, _ = answer_to(head, body)
    return int(answer.split(b' ')[1])


def test_get_metrics_is_the_published_text_as_prometheus_reads_it():
    head, body = answer_to(b'GET /metrics HTTP/1.1\r\nHost: m\r\nAccept: */*', TEXT)
    assert head.startswith(b'HTTP/1.1 200 OK\r\n') and head.endswith(b'\r\n\r\n')
    assert b'\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n' in head
    assert b'\r\nContent-Length: %d\r\n' % len(TEXT) in head
    assert b'\r\nConnection: close\r\n' in head
    assert body is TEXT, 'the published bytes themselves, not a copy'
    assert answer_to(b'GET /metrics?x=1 HTTP/1.0', TEXT)[1] is TEXT
    head, body = answer_to(b'HEAD /metrics HTTP/1.1', TEXT)
    assert b'Content-Length: %d' % len(TEXT) in head and body == b''


@pytest.mark.parametrize('head, expected', [
    (b'GET / HTTP/1.1', 404), (b'GET /metrics/ HTTP/1.1', 404), (b'GET /Metrics HTTP/1.1', 404),
    (b'GET http://m/metrics HTTP/1.1', 404), (b'POST /metrics HTTP/1.1', 405),
    (b'DELETE /x HTTP/1.1', 405), (b'GET /metrics', 400), (b'GET  /metrics HTTP/1.1', 400),
    (b'GET /metrics SPDY/3', 400), (b'\x16\x03\x01\x02\x00\x01', 400), (b'', 400),
])
def test_anything_else_is_an_error_with_its_status(head, expected):
    assert status(head) == expected


def test_before_the_first_text_is_published_the_answer_is_503():
    assert status(b'GET /metrics HTTP/1.1', None) == 503


def fetch(port, request=b'GET /metrics HTTP/1.1\r\n\r\n', pause=0.0):
    """The whole answer; `pause`: a wait before reading it, while the server's
    socket buffer fills up."""
    with socket.create_connection(('127.0.0.1', port), timeout=10) as sock:
        sock.sendall(request)
        time.sleep(pause)
        chunks = []
        while True:
            chunk = sock.recv(1 << 20)
            if not chunk:
                return b''.join(chunks)
            chunks.append(chunk)


def test_an_answer_bigger_than_any_socket_buffer_arrives_whole_even_read_late():
    """A thousand nodes make megabytes: the thread waits for the reader, it does not
    drop the connection when the kernel's buffer is full."""
    server = MetricsServer(listen('127.0.0.1:0'), posted.append)
    port = server.sock.getsockname()[1]
    text = b''.join(b'diprocd_process_up{node="n%d",name="p"} 1\n' % i for i in range(200000))
    server.publish(text)
    server.start()
    try:
        head, _, body = fetch(port, pause=0.3).partition(b'\r\n\r\n')
        assert head.startswith(b'HTTP/1.1 200 OK') and body == text
        server.publish(b'new\n')
        assert fetch(port).endswith(b'\r\n\r\nnew\n'), 'the text published last'
    finally:
        server.stop()
    assert not server.is_alive() and posted == []


BIG = b'x' * (8 << 20)              # more than the kernel buffers of a tiny reader


def tiny_reader(port):
    """A connection that asked for the metrics and takes the answer in sips: a
    receive buffer of a few KiB, so the server's sends soon stop."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect(('127.0.0.1', port))
    sock.sendall(b'GET /metrics HTTP/1.1\r\n\r\n')
    return sock


def serving(text):
    server = MetricsServer(listen('127.0.0.1:0'), posted.append)
    server.publish(text)
    server.start()
    return server, server.sock.getsockname()[1]


def test_answers_nobody_reads_make_room_for_a_scraper_once_they_are_slow(monkeypatch):
    """Every connection taken by an answer its reader never takes: a new scraper
    is turned away until the oldest of them has taken longer than SLOW_ANSWER,
    then served (before, it was turned away for as long as they stayed)."""
    monkeypatch.setattr(httpd, 'SLOW_ANSWER', 0.5)
    monkeypatch.setattr(httpd, 'SEND_TIMEOUT', 30.0)    # no answer ends by itself here
    server, port = serving(BIG)
    held = []
    try:
        held = [tiny_reader(port) for _ in range(httpd.MAX_CONNECTIONS)]
        wait_until(lambda: len(server.connections) == httpd.MAX_CONNECTIONS and
                   all(not c.reading for c in list(server.connections.values())))
        answer = wait_until(lambda: fetch_or_none(port), timeout=3)
        head, _, body = answer.partition(b'\r\n\r\n')
        assert head.startswith(b'HTTP/1.1 200 OK') and body == BIG
    finally:
        for sock in held:
            sock.close()
        server.stop()
    assert posted == []


def fetch_or_none(port):
    try:
        return fetch(port)
    except ConnectionError:
        return None


def test_an_answer_taken_in_sips_ends_at_its_deadline(monkeypatch):
    """A reader that takes a little now and then makes progress (no SEND_TIMEOUT),
    but the server ends its answer at ANSWER_TIMEOUT all the same."""
    monkeypatch.setattr(httpd, 'ANSWER_TIMEOUT', 1.0)
    server, port = serving(BIG)
    sock = tiny_reader(port)
    try:
        wait_until(lambda: server.connections)
        started = time.monotonic()
        while server.connections and time.monotonic() - started < 5:
            assert sock.recv(1024), 'the answer goes on while the server holds it'
            time.sleep(0.05)                     # a sip at a time
        assert 0.9 <= time.monotonic() - started < 3, 'ended at ANSWER_TIMEOUT'
    finally:
        sock.close()
        server.stop()
    assert posted == []


posted = []


def test_out_of_descriptors_the_listener_rests_instead_of_spinning(monkeypatch):
    """The connection waits in the kernel's queue, so the listener stays readable:
    a failed accept() must not be tried again at once, for ever."""
    monkeypatch.setattr(acceptpause, 'REST_SECONDS', 0.3)
    listener = OutOfDescriptors(listen('127.0.0.1:0'))
    server = MetricsServer(listener, posted.append)
    server.publish(TEXT)
    server.start()
    try:
        with socket.create_connection(('127.0.0.1', listener.real.getsockname()[1]),
                                      timeout=10) as sock:
            sock.sendall(b'GET /metrics HTTP/1.1\r\n\r\n')
            wait_until(lambda: listener.calls >= 1)
            time.sleep(0.5)              # the time a spinning thread makes thousands of calls
            assert listener.calls <= 3, listener.calls
            listener.failing = False
            assert sock.recv(1 << 16).startswith(b'HTTP/1.1 200 OK')
    finally:
        server.stop()
    assert not server.is_alive() and posted == []
