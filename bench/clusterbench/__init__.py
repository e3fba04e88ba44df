"""The cluster benchmark's parts; `bench/cluster.py` is the entry point and its
docstring says how each figure is taken.

    proc        processes we start, and what /proc says about them
    observe     the moment a daemon says READY=1, or a file lands (inotify)
    lists       the master file's node lists, and the JSON files we write
    master      the real dpd-masterd under test
    realnodes   real dpd-clientd + dpd-workerd nodes and their measurements
    simnode     a simulated node: the real Controller and ClientPolicy
    acknode     a node that only acknowledges (--master-only)
    simchild    a child process holding many simulated nodes
    fleet       the parent's side of those child processes
    simbench    the measurements with simulated nodes
    masteronly  the master-only measurements (--master-only)
    results     the table, the JSON, the summary lines
    cli         options and main
"""
import os
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
mono = time.monotonic       # CLOCK_MONOTONIC: the same clock in every process


class BenchError(Exception):
    """The benchmark cannot go on (a deadline passed, a daemon exited)."""
