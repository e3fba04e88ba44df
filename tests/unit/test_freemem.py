"""freemem: pages a big transient freed go back to the system (glibc's malloc_trim)."""
import pytest

from dpd import freemem


def _rss_mib():
    with open('/proc/self/status') as status:
        for line in status:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) / 1024
    raise AssertionError('no VmRSS')


def test_freed_pages_in_the_middle_of_the_heap_go_back():
    if freemem._malloc_trim() is None:
        pytest.skip('this libc has no malloc_trim (not glibc)')
    # 64 MB of glibc-sized blocks (above pymalloc's 512 bytes), one in 16 kept: what
    # stays pins the heap's top, so free() alone gives nothing back
    blocks = [bytearray(4000) for _ in range(16000)]
    kept = blocks[::16]
    del blocks
    before = _rss_mib()
    freemem.give_back()
    after = _rss_mib()
    assert before - after > 20, 'RSS %.1f -> %.1f MiB' % (before, after)
    assert len(kept) == 1000


def test_giving_back_twice_or_with_nothing_freed_is_harmless():
    freemem.give_back()
    freemem.give_back()
