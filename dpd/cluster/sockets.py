"""The sockets of the master and the client: types, options, keys (see protocol.py)."""
import logging

import zmq

from ..config import ConfigError
from . import keys, protocol
from .config import is_local_endpoint
from .link import Curve, SocketPlan

# A client pings every 10 s and drops a connection silent for 30 s. It asks the
# master for no timeout of its own (no ZMTP TTL): libzmq keeps such a timeout as a
# timer, and cancels it at each message by a walk over every timer of its I/O
# thread (poller_base_t::cancel_timer, O(n)), which at 10,000 nodes was half of
# the master's I/O thread (10-13 % of a core idle, 0.7-1.1 CPU-s per edit). The
# master drops a dead node's connection by TCP keepalive instead (KEEPALIVE),
# which the kernel times.
HEARTBEATS = ((zmq.HEARTBEAT_IVL, 10000), (zmq.HEARTBEAT_TIMEOUT, 30000))
RECONNECT = ((zmq.RECONNECT_IVL, 1000), (zmq.RECONNECT_IVL_MAX, 0))
# A connection silent for 30 s (a live client pings every 10 s) is probed every
# 10 s and dropped after 3 probes unanswered, or after 60 s of data unacknowledged.
KEEPALIVE = ((zmq.TCP_KEEPALIVE, 1), (zmq.TCP_KEEPALIVE_IDLE, 30),
             (zmq.TCP_KEEPALIVE_INTVL, 10), (zmq.TCP_KEEPALIVE_CNT, 3),
             (zmq.TCP_MAXRT, 60000))
MIN_LIBZMQ = (4, 3, 2)   # older ones have pre-authentication CURVE bugs (CVE-2019-13132)

log = logging.getLogger('dpd')


# What libzmq may queue from one connection before it stops reading it (TCP then
# pushes back on the peer): an honest client has one HELLO or REPORT in flight,
# so one suffices. libzmq holds that much per connection (and the one it is
# reading) before the inbox's budget sees any of it: with the default, 1000
# messages of up to 2 MiB, one peer could fill the master's memory; with 8, a
# hundred connections flooding took it to 796-888 MiB; with one, to 260
# (tests/integration/test_hardening.py, fault 8). What it costs: libzmq tells
# its I/O thread at each message taken that the connection may be read again.
PEER_QUEUE = 1
# With CURVE, libzmq (4.3) queues the peer's User-Id ahead of its first message and
# counts it against the queue, but never counts it as taken (pipe_t::read skips it):
# one place stays used for the connection's life, and with a queue of one nothing
# after the handshake would ever be read.
CURVE_USER_ID = 1


def _peer_queue(curve):
    return PEER_QUEUE + (CURVE_USER_ID if curve is not None else 0)


# And what a client's libzmq may read ahead of its own budget: an honest master
# sends a node an answer, a list, a command or two at once; the default (1000
# messages of up to 8 MiB) let a master flooding a node with lists take the client
# to 470-563 MiB (tests/integration/test_protocol_peers.py); four, to 130.
MASTER_QUEUE = 4


def master_plans(config, curve):
    # No ZMTP heartbeats from the master: each client pings every 10 s, and TCP
    # keepalive drops a dead node's connections; with a thousand nodes the
    # master's own heartbeats were two thirds of its I/O thread's work.
    return (
        SocketPlan(protocol.UPDATES, zmq.XPUB, config.master_updates, bind=True, curve=curve,
                   options=KEEPALIVE + ((zmq.XPUB_VERBOSE, 1), (zmq.BACKLOG, 1024),
                                        (zmq.SNDHWM, 1000), (zmq.MAXMSGSIZE, 1024))),
        SocketPlan(protocol.STATS, zmq.ROUTER, config.master_stats, bind=True, curve=curve,
                   options=KEEPALIVE + ((zmq.ROUTER_MANDATORY, 1), (zmq.BACKLOG, 1024),
                                        (zmq.SNDHWM, 1000), (zmq.RCVHWM, _peer_queue(curve)),
                                        (zmq.MAXMSGSIZE, 2 * protocol.MAX_JSON_BYTES))),
    )


def client_plans(config, curve):
    """One connection per node, to the stats endpoint: what the master says to a node
    is an answer, or sent on the connection that node last spoke on. (A first-round
    client also subscribed to the updates endpoint, for NOTIFY and HUGZ: a second
    connection per node, half of the master's memory at a thousand nodes.)"""
    return (
        SocketPlan(protocol.STATS, zmq.DEALER, config.master_stats, bind=False, curve=curve,
                   options=HEARTBEATS + RECONNECT + (
                       (zmq.SNDHWM, 10), (zmq.RCVHWM, MASTER_QUEUE),
                       (zmq.MAXMSGSIZE, 2 * protocol.MAX_FRAME_BYTES))),
    )


def master_keys(config):
    """(Curve or None, {public key: node} or None); KeyProblem -> ConfigError."""
    if config.secret_key is None:
        return None, None
    try:
        public, secret = keys.load_secret(config.secret_key)
        return Curve(public, secret), keys.load_authorized(config.authorized_keys)
    except keys.KeyProblem as err:
        raise ConfigError([str(err)]) from None


def client_curve(config):
    if config.secret_key is None:
        return None
    try:
        public, secret = keys.load_secret(config.secret_key)
        return Curve(public, secret, server_key=keys.load_public(config.master_public_key))
    except keys.KeyProblem as err:
        raise ConfigError([str(err)]) from None


def warn_if_open(endpoints, curve, threat):
    """No keys on an endpoint others can reach: say so at start (SPEC 5)."""
    if zmq.zmq_version_info() < MIN_LIBZMQ:
        log.warning('libzmq %s is older than %s, which fixed CURVE security bugs',
                    zmq.zmq_version(), '.'.join(map(str, MIN_LIBZMQ)))
    if curve is not None:
        return
    for endpoint in endpoints:
        if not is_local_endpoint(endpoint):
            log.warning('%s is reachable from the network and no keys are configured: '
                        'anyone who can reach it can %s (see "Securing a cluster" in the '
                        'README)', endpoint, threat)
