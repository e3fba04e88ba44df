"""The inbox: trusted facts always get in; peers' messages within a budget."""
import queue

import pytest

from dpd.inbox import SMALL_MESSAGE, Inbox


def test_peers_messages_are_refused_past_the_count_and_counted():
    inbox = Inbox(max_messages=3, max_bytes=10 ** 6)
    assert [inbox.offer(('m', i), 10) for i in range(5)] == [True] * 3 + [False] * 2
    inbox.put('signal')                        # a fact of our own always gets in
    assert (inbox.dropped, inbox.dropped_bytes, inbox.waiting) == (2, 20, 3)
    assert [inbox.get_nowait() for _ in range(4)] == [('m', 0), ('m', 1), ('m', 2), 'signal']
    assert inbox.waiting == inbox.waiting_bytes == 0
    assert inbox.offer('again', 10), 'taking makes room'
    with pytest.raises(queue.Empty):
        inbox.get_nowait() and inbox.get_nowait()


def test_big_messages_are_held_to_the_byte_budget_and_small_ones_still_pass():
    big = 1000 * SMALL_MESSAGE
    inbox = Inbox(max_messages=100, max_bytes=2 * big)
    assert [inbox.offer('big', big) for _ in range(3)] == [True, True, False]
    assert inbox.offer('hello', 200), 'an honest HELLO gets through a flood'
    assert inbox.waiting_bytes == 2 * big + 200
    assert inbox.get(timeout=1) == 'big' and inbox.waiting_bytes == big + 200


def test_a_batch_is_one_entry_in_the_queue_and_counted_fact_by_fact():
    inbox = Inbox(max_messages=3, max_bytes=10 ** 6)
    assert inbox.offer_all([(('m', i), 10) for i in range(5)]) == 2, 'two dropped'
    inbox.put('signal')
    assert inbox.waiting == 3 and inbox.dropped == 2
    assert inbox.get(timeout=1) == ('m', 0) and inbox.waiting == 2
    assert [inbox.get_nowait() for _ in range(3)] == [('m', 1), ('m', 2), 'signal']
    assert inbox.waiting == inbox.waiting_bytes == 0
    assert inbox.offer_all([]) == 0
    with pytest.raises(queue.Empty):
        inbox.get_nowait()
