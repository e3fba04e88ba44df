"""Node states, as the master names them, and what "as desired" means for a node
(the master logs a node that leaves it; dpd-ctl's exit status says it)."""
from ..worker.lifecycle import as_desired

NODE_STATES = ('in-sync', 'pending', 'held', 'lagging', 'rejected', 'stale', 'never-seen',
               'unmanaged')
NOT_AS_DESIRED = ('lagging', 'rejected', 'stale', 'never-seen')


def node_as_desired(node):
    """A node record of the master's state file: running what it should, and
    every process it reported as desired (none left out of a report too big to
    keep: the master cannot say so of those). A node outside the file always is."""
    if node['state'] == 'unmanaged':
        return True
    return (node['state'] not in NOT_AS_DESIRED + ('held',) and not node.get('errors')
            and not node.get('processes_more')
            and all(as_desired(p) for p in node.get('processes') or []))
