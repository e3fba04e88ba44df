"""What the worker's policy asks its executor to do; the shared actions are re-exported."""
from ..actions import Exit, Log, Notify, ReloadConfig, ReopenLogs, Reply, WriteState  # noqa: F401
from ..record import Record


class Spawn(Record):
    name: str
    spec: object            # ProcessSpec
    confine: tuple = None   # the node policy's directories, when it applies


class FindDaemon(Record):
    """Read `pid_file`; report the process it names if it descends from the launcher."""
    name: str
    pid_file: str
    launcher: int           # the pid of the program the worker ran (0: ended, reaped)
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


class SampleUsage(Record):
    """Memory and CPU of these processes' trees, as UsageSampled."""
    pids: dict              # name -> main pid


class RemovePidFile(Record):
    path: str
    pid: int                # only if the file still names this pid
    confine: tuple = None


class Forget(Record):
    """The process is gone for good: its output channel drained and closed, its
    cgroup removed, its notify socket closed."""
    name: str


class RunCheck(Record):
    """Health check number `seq` of a process: CheckDone answers, now or later."""
    name: str
    seq: int
    spec: object            # the process's ProcessSpec (an exec check runs as it does)
    confine: tuple = None


class KillCheck(Record):
    """The process's running exec check outlived its timeout: KILL its group."""
    name: str


class StreamLog(Record):
    """Send control connection `number` the last `lines` of a process's log file
    (and, with `follow`, what is appended), opened as the pump writes it."""
    number: int
    path: str
    user: str               # the process's user: the file is theirs or the worker's
    lines: int
    follow: bool
    confine: tuple = None
