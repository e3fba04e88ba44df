"""The worker's facts; the shared ones are re-exported, so the worker reads one namespace."""
from ..events import (CommandGone, CommandReceived, ConfigLoaded, ConfigRejected,  # noqa: F401
                      SignalReceived, ThreadCrashed, Tick)
from ..record import Record


class ProcessStarted(Record):
    name: str
    pid: int
    started: tuple          # procfs.identity: (start ticks, session); None if gone
    cgroup: str = None      # its cgroup (v2 path), where it has one


class SpawnFailed(Record):
    name: str
    error: str


class ProcessExited(Record):
    name: str
    pid: int
    code: int = None        # exit status, when the process exited
    signal: int = None      # the signal that ended it; both None: unknown (not our child)
    oom: bool = False       # the OOM killer acted in its tree meanwhile


class TreeEmptied(Record):
    """The process's cgroup holds no process any more."""
    name: str


class CheckDone(Record):
    """A health check ended (its number, whether it passed, and what it said)."""
    name: str
    seq: int
    passed: bool
    detail: str


class Notified(Record):
    """An sd_notify datagram on a process's socket, with who sent it: the kernel's
    pid of the sender, its ancestors and its cgroup (the policy tells whether it
    belongs to the process's tree)."""
    name: str
    fields: dict
    pid: int
    lineage: tuple
    cgroup: str = None


class UsageSampled(Record):
    usage: dict             # name -> (memory bytes, CPU seconds), None where unknown


class DaemonFound(Record):
    name: str
    pid: int
    started: tuple


class DaemonNotFound(Record):
    name: str
    reason: str
    final: bool = False     # not "not yet": the pid file can never name it


class GroupChecked(Record):
    name: str
    pgid: int
    alive: bool


class PreviousRun(Record):
    """What the last worker on this config left: live processes, finished ones."""
    adopted: tuple          # of dicts: the state-file records, verified alive
    finished: tuple         # of dicts: `exited` records of this boot
    leftovers: tuple = ()   # of dicts: `daemon: true` launches cut short (stopped)
    unconfirmed: tuple = () # marks of starts the previous worker died in (journal.py)
