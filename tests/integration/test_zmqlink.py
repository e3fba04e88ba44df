"""The zmq thread's outbox: every message sent is delivered, with nothing else
happening on the sockets to wake the thread (one wake-up per batch of sends)."""
import threading

import zmq

from dpd.cluster.link import SocketPlan, ZmqLink
from dpd.inbox import Inbox


def test_bursts_of_sends_from_another_thread_all_arrive(tmp_path):
    endpoint = 'ipc://' + str(tmp_path / 'peer.sock')
    context = zmq.Context()
    peer = context.socket(zmq.ROUTER)
    peer.linger = 0
    peer.bind(endpoint)
    link = ZmqLink(Inbox(),
                   [SocketPlan('out', zmq.DEALER, endpoint, False, ((zmq.SNDHWM, 0),))])
    link.start()
    link.wait_ready()
    total, sent = 20000, []

    def sender():
        for index in range(total):
            link.send('out', [b'%d' % index])
            sent.append(index)
    try:
        threading.Thread(target=sender, daemon=True).start()
        poller = zmq.Poller()
        poller.register(peer, zmq.POLLIN)
        received = []
        while len(received) < total:
            assert poller.poll(10000), 'stalled after %d of %d messages' % (
                len(received), total)
            received.append(int(peer.recv_multipart()[1]))
        assert received == list(range(total))
    finally:
        link.stop()
        peer.close(0)
        context.term()
