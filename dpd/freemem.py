"""Memory a big transient freed, given back to the system.

glibc keeps what is freed in its arenas, for the next allocations; pages in
the middle of an arena stay resident until `malloc_trim` hands them back. The
master parses its whole file at each edit: at 10,000 nodes a 13 MB file
becomes some 80 MB of objects and texts, freed as soon as each node's list is
checked, and RSS kept about 90 MB of them after a few edits (measured with
/proc/PID/status around a `malloc_trim(0)`: 694 -> 606 MiB).
"""
import functools


def give_back():
    """Hand freed pages back to the system (a no-op where libc has no malloc_trim)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.lru_cache(maxsize=None)
def _malloc_trim():
    try:
        import ctypes       # only here: the daemons never need it otherwise
        return ctypes.CDLL(None).malloc_trim
    except (ImportError, OSError, AttributeError):     # not glibc (musl has none)
        return None
