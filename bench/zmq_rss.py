#!/usr/bin/env python3
"""What libzmq keeps per connection, in a process shaped like the master.

One process binds an XPUB and a ROUTER (the master's options that matter here),
a child connects N SUB+DEALER pairs (or DEALERs only, `--dealers-only`: what one
socket per node would cost); then ROUNDS exchanges: an ACK to every DEALER,
answered by a REPORT-sized message, and a HUGZ-sized publish. Prints the binding
process's RSS per node after the connections and as the rounds go: libzmq's queues
keep up to two 16 KiB blocks of 256 frames each, so the figure grows until every
queue that carries traffic has rolled over once.

    .venv-test/bin/python bench/zmq_rss.py --nodes 1000 --rounds 600
"""
import argparse
import resource
import subprocess
import sys
import time

import zmq

PUB, ROUTER = 'tcp://127.0.0.1:35601', 'tcp://127.0.0.1:35602'


def rss_mib():
    with open('/proc/self/status') as f:
        return next(int(line.split()[1]) for line in f if line.startswith('VmRSS')) / 1024


def child(n, dealers_only):
    ctx = zmq.Context()
    ctx.set(zmq.MAX_SOCKETS, 3 * n + 10)
    socks = []
    for i in range(n):
        if not dealers_only:
            sub = ctx.socket(zmq.SUB)
            sub.setsockopt(zmq.SUBSCRIBE, b'N:n%d\0' % i)
            sub.setsockopt(zmq.SUBSCRIBE, b'H\0')
            sub.connect(PUB)
            socks.append(sub)
        dealer = ctx.socket(zmq.DEALER)
        dealer.connect(ROUTER)
        dealer.send_multipart([b'HELLO', b'{"v":1,"node":"n%d"}' % i])
        socks.append(dealer)
    poller = zmq.Poller()
    for sock in socks:
        poller.register(sock, zmq.POLLIN)
    while True:
        for sock, _ in poller.poll(1000):
            while sock.poll(0):
                frames = sock.recv_multipart()
                if sock.type == zmq.DEALER and frames[0] == b'ACK':
                    sock.send_multipart([b'REPORT', b'r' * 600])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--nodes', type=int, default=1000)
    ap.add_argument('--rounds', type=int, default=600)
    ap.add_argument('--dealers-only', action='store_true')
    ap.add_argument('--child', action='store_true', help=argparse.SUPPRESS)
    opts = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if opts.child:
        return child(opts.nodes, opts.dealers_only)
    n = opts.nodes
    ctx = zmq.Context()
    pub = ctx.socket(zmq.XPUB)
    pub.setsockopt(zmq.SNDHWM, 1000)
    pub.setsockopt(zmq.BACKLOG, 1024)
    pub.bind(PUB)
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.RCVHWM, 8)
    router.setsockopt(zmq.BACKLOG, 1024)
    router.bind(ROUTER)
    base = rss_mib()
    kid = subprocess.Popen([sys.executable, __file__, '--child', '--nodes', str(n)] +
                           (['--dealers-only'] if opts.dealers_only else []))
    try:
        peers, deadline = set(), time.monotonic() + 60
        while len(peers) < n and time.monotonic() < deadline:
            if router.poll(100):
                while router.poll(0):
                    peers.add(router.recv_multipart()[0])
            while pub.poll(0):
                pub.recv()
        time.sleep(1)
        print('%d nodes: base %.1f MiB, connected +%.1f KiB per node'
              % (n, base, (rss_mib() - base) * 1024 / n), flush=True)
        for done in range(1, opts.rounds + 1):
            for peer in peers:
                router.send_multipart([peer, b'ACK', b'a' * 150])
            got = 0
            while got < len(peers) and router.poll(2000):
                while router.poll(0):
                    router.recv_multipart()
                    got += 1
            pub.send_multipart([b'H\0', b'HUGZ', b'h' * 100])
            if done in (1, 10, 100, 256, 300, 512) or done == opts.rounds:
                grown = (rss_mib() - base) * 1024 / n
                print('after %d rounds: +%.1f KiB per node' % (done, grown), flush=True)
    finally:
        kid.kill()
        kid.wait()


if __name__ == '__main__':
    sys.exit(main())
