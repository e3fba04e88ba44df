"""What the worker's policy asks its executor to do; the shared actions are re-exported."""
from ..actions import Exit, Log, Notify, ReloadConfig, ReopenLogs, WriteState  # noqa: F401
from ..record import Record


class Spawn(Record):
    name: str
    spec: object            # ProcessSpec
    confine: tuple = None   # the node policy's directories, when it applies


class FindDaemon(Record):
    """Read `pid_file`; report the process it names if it descends from the launcher."""
    name: str
    pid_file: str
    launcher: int           # the pid of the program the worker ran
    not_before: int         # its start ticks
    confine: tuple = None


class EndLaunch(FindDaemon):
    """A launch given up or stopped: KILL the launcher's group, and the daemon its pid
    file names if that one descends from the launch (SPEC 5.2: no duplicate)."""


class SendSignal(Record):
    name: str
    pid: int
    signum: int
    group: bool = True      # to the whole process group, led by `pid`


class CheckGroup(Record):
    name: str
    pgid: int


class ClearTree(Record):
    """Before a start: KILL whatever is left in the process's cgroup; TreeEmptied
    answers (at once when it is empty already, or when there is none)."""
    name: str


class RemoveTree(Record):
    """The process is gone for good: its cgroup goes too."""
    name: str


class SampleUsage(Record):
    """Memory and CPU of these processes' trees, as UsageSampled."""
    pids: dict              # name -> main pid


class RemovePidFile(Record):
    path: str
    pid: int                # only if the file still names this pid
    confine: tuple = None


class CloseOutput(Record):
    """The process is gone for good: drain its output channel and close it."""
    name: str
