"""What the master's and the client's policies ask; the shared actions are re-exported."""
from ..actions import Exit, Log, Notify, ReloadConfig, ReopenLogs, Reply, WriteState  # noqa: F401
from ..record import Record


class Send(Record):
    socket: str
    frames: tuple
    fallback: object = None   # a Send for when these frames cannot go (no such peer now)


class RebuildLink(Record):
    """Close and re-create the sockets (long silence: maybe a wedged connection)."""


class AskWorker(Record):
    """Relay an operator's request to the local worker's control socket."""
    ref: str
    request: dict


class CancelAsk(Record):
    """The operator is gone: close the relay's connection to the worker."""
    ref: str


class WriteWorkerFile(Record):
    """Replace the worker file's `procs` (and `_diprocd` record), atomically."""
    entries: list
    record: dict            # {gen, sha256, epoch}


class KeepRolloutLists(Record):
    """Save the lists a new rollout's nodes keep while held (for a restarted master)."""
    record: dict            # {id, lists: {node: Desired.saved}}


class DropRolloutLists(Record):
    """No node is held any more: the saved lists (old versions, maybe secrets) go."""
