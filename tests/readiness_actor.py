#!/usr/bin/env python3
"""A test child that gets ready, listens, answers and notifies on cue (SPEC 6.1).

`readiness_actor.py [OPTIONS] [--marker=...]`; every option is optional:

  --name NAME            how it calls itself in --record lines (default: "actor")
  --record FILE          append "start NAME PID T" when it starts, "ready NAME PID T"
                         just before it sends READY=1, and "term NAME PID T" on SIGTERM
                         (then it exits 0); T is time.monotonic()
  --when FILE            wait until FILE exists before listening / getting ready / exiting
  --ready-after S        send READY=1 (with --status, if given) S seconds after the start
                         (and after --when)
  --ready-from-grandchild  that READY=1 comes from a grandchild (child of a child, both
                         staying alive), not from this process
  --status TEXT          sent as STATUS=TEXT with READY=1
  --beats N --every S    after READY=1, WATCHDOG=1 N times, one each S seconds, then stop
                         (the process keeps running, silent)
  --listen PORT          listen on 127.0.0.1:PORT (after --when and --listen-after S):
                         connections are accepted and closed; SIGUSR2 closes the listener,
                         SIGHUP opens it again
  --http PORT            serve HTTP on 127.0.0.1:PORT: every answer's status is read from
                         --code-file (200 when the file is missing); SIGUSR2/SIGHUP as above
  --exit-after S --exit-code C   exit with C, S seconds after the start (and --when)
  --env-dump FILE        write the environment it was given as JSON (atomically)
  --daemonize PIDFILE    fork into the background first (double fork, setsid; the
                         launcher exits 0 at once), then go on as above; the daemon writes
                         its pid to PIDFILE just after its READY=1 (at once without
                         --ready-after)
SIGUSR1 sends STATUS=usr1 #N (N counts the USR1 received).
Arguments that start with --marker= are ignored: tests find their processes by them.
"""
import argparse
import json
import os
import select
import signal
import socket
import sys
import time

flags = {'usr1': 0, 'close': False, 'open': False}


def append(path, line):
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        os.write(fd, (line + '\n').encode())
    finally:
        os.close(fd)


def notify(text):
    address = os.environ.get('NOTIFY_SOCKET')
    if not address:
        return False
    if address.startswith('@'):
        address = '\0' + address[1:]
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    try:
        sock.sendto(text.encode(), address)
    finally:
        sock.close()
    return True


def listener(port):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(('127.0.0.1', port))
    sock.listen(64)
    return sock


def answer_http(conn, code_file):
    conn.settimeout(1.0)
    data = b''
    try:
        while b'\r\n\r\n' not in data and len(data) < 65536:
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
        try:
            with open(code_file) as f:
                code = int(f.read().strip() or 200)
        except (OSError, ValueError):
            code = 200
        conn.sendall(('HTTP/1.0 %d Test\r\nContent-Length: 0\r\nLocation: /elsewhere\r\n'
                      'Connection: close\r\n\r\n' % code).encode())
    except OSError:
        pass
    finally:
        conn.close()


def main():
    argv = [a for a in sys.argv[1:] if not a.startswith('--marker=')]
    parser = argparse.ArgumentParser()
    parser.add_argument('--name', default='actor')
    parser.add_argument('--record')
    parser.add_argument('--when')
    parser.add_argument('--ready-after', type=float)
    parser.add_argument('--ready-from-grandchild', action='store_true')
    parser.add_argument('--status')
    parser.add_argument('--beats', type=int, default=0)
    parser.add_argument('--every', type=float, default=0.1)
    parser.add_argument('--listen', type=int)
    parser.add_argument('--listen-after', type=float, default=0.0)
    parser.add_argument('--http', type=int)
    parser.add_argument('--code-file')
    parser.add_argument('--exit-after', type=float)
    parser.add_argument('--exit-code', type=int, default=0)
    parser.add_argument('--env-dump')
    parser.add_argument('--daemonize')
    opts = parser.parse_args(argv)
    if opts.daemonize:
        daemonize()
        if opts.ready_after is None:
            write_pid(opts.daemonize)
    me = os.getpid()

    def record(what):
        if opts.record:
            append(opts.record, '%s %s %d %.6f' % (what, opts.name, os.getpid(),
                                                   time.monotonic()))

    def on_term(signum, frame):
        # the worker signals the group and the cgroup: TERM may come twice
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if os.getpid() == me:
            record('term')
        os._exit(0)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGUSR1, lambda s, f: flags.__setitem__('usr1', flags['usr1'] + 1))
    signal.signal(signal.SIGUSR2, lambda s, f: flags.__setitem__('close', True))
    signal.signal(signal.SIGHUP, lambda s, f: flags.__setitem__('open', True))
    record('start')
    if opts.env_dump:
        tmp = opts.env_dump + '.tmp'
        with open(tmp, 'w') as f:
            json.dump(dict(os.environ), f)
        os.rename(tmp, opts.env_dump)

    while opts.when and not os.path.exists(opts.when):
        time.sleep(0.01)
    gated = time.monotonic()

    port = opts.listen or opts.http
    sock, closed = None, False
    usr1_sent = 0
    ready_sent = opts.ready_after is None
    beats_sent, last_beat = 0, None
    while True:
        now = time.monotonic()
        if flags['close']:
            flags['close'], closed = False, True
        if flags['open']:
            flags['open'], closed = False, False
        if closed and sock is not None:
            sock.close()
            sock = None
        if sock is None and port and not closed and now - gated >= opts.listen_after:
            sock = listener(port)
        if not ready_sent and now - gated >= opts.ready_after:
            ready_sent = True
            text = 'READY=1' + ('\nSTATUS=%s' % opts.status if opts.status else '')
            record('ready')
            if opts.ready_from_grandchild:
                ready_from_grandchild(text)
            else:
                notify(text)
            if opts.daemonize:
                write_pid(opts.daemonize)
            last_beat = time.monotonic()
        if ready_sent and beats_sent < opts.beats and last_beat is not None and \
                now - last_beat >= opts.every:
            notify('WATCHDOG=1')
            beats_sent, last_beat = beats_sent + 1, now
        if flags['usr1'] > usr1_sent:
            usr1_sent = flags['usr1']
            notify('STATUS=usr1 #%d' % usr1_sent)
        if opts.exit_after is not None and now - gated >= opts.exit_after:
            sys.exit(opts.exit_code)
        try:
            ready = select.select([sock] if sock is not None else [], [], [], 0.02)[0]
        except InterruptedError:
            continue
        if ready and sock is not None:
            try:
                conn, _ = sock.accept()
            except OSError:
                continue
            if opts.http:
                answer_http(conn, opts.code_file or '/nonexistent')
            else:
                conn.close()


def daemonize():
    if os.fork():
        os._exit(0)
    os.setsid()
    if os.fork():
        os._exit(0)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)


def write_pid(pidfile):
    tmp = pidfile + '.tmp'
    with open(tmp, 'w') as f:
        f.write('%d\n' % os.getpid())
    os.rename(tmp, pidfile)


def ready_from_grandchild(text):
    """A child that forks a grandchild; the grandchild notifies; both stay."""
    if os.fork() == 0:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if os.fork() == 0:
            notify(text)
            while True:
                signal.pause()
        while True:
            signal.pause()


if __name__ == '__main__':
    main()
