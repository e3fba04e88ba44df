"""What a restarted master takes from the last one: the list versions it served
(versions stay monotonic), and a rollout under way with the lists its held
nodes keep (SPEC 6.5).

The rollout's progress is in the state file (`rollout`); the lists its held
nodes keep are in a file of their own beside it, written once when the rollout
starts (a thousand old lists would otherwise be rewritten with every state
write) and removed once no node is held. Both files are the master's: one that another user could have written
is not trusted (SPEC 5.2), and every list must match its hash.
"""
import hashlib
import logging
import os

from .. import jsonfile, state
from .rollout import HOLDING, STATUSES

log = logging.getLogger('dpd')
MAX_LISTS_BYTES = 256 * 1024 * 1024


def lists_path(state_file):
    """CONFIG.state.json -> CONFIG.state.rollout.json"""
    base = state_file[:-len('.json')] if state_file.endswith('.json') else state_file
    return base + '.rollout.json'


def previous_state(state_file):
    """({node: {gen, sha256}}, (rollout record, {node: kept list}) or None)."""
    try:
        doc = state.read(state_file)
    except (OSError, ValueError):
        return {}, None
    return _versions(doc), _rollout(doc.get('rollout'), state_file)


def _versions(doc):
    versions = {}
    for node in doc.get('nodes') or []:
        desired = node.get('desired') if isinstance(node, dict) else None
        if isinstance(desired, dict) and type(desired.get('gen')) is int and \
                isinstance(desired.get('sha256'), str) and isinstance(node.get('node'), str):
            versions[node['node']] = {'gen': desired['gen'], 'sha256': desired['sha256']}
    return versions


def _rollout(record, state_file):
    if not isinstance(record, dict):
        return None
    if not _well_formed(record):
        log.warning('%s: the rollout record is not as this version writes it: not resumed',
                    state_file)
        return None
    if not any(status in HOLDING for status in record['status'].values()):
        return record, {}           # nobody held: its lists were dropped (or never needed)
    path = lists_path(state_file)
    try:
        saved = _read_own(path)
        if saved.get('id') != record['id']:
            raise ValueError('it belongs to another rollout')
        lists = {node: _kept(node, entry) for node, entry in saved['lists'].items()}
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as err:
        log.warning('%s: cannot read the lists of rollout %s (%s): not resumed',
                    path, record['id'], err)
        return None
    return record, lists


def _well_formed(record):
    """The keys Rollout.resumed reads, with their types."""
    status, since, waves = record.get('status'), record.get('since'), record.get('waves')
    return (isinstance(record.get('id'), str) and type(record.get('wave')) is int and
            isinstance(waves, list) and all(isinstance(w, list) for w in waves) and
            isinstance(status, dict) and all(s in STATUSES for s in status.values()) and
            isinstance(since, dict) and
            all(isinstance(t, (int, float)) for t in since.values()) and
            isinstance(record.get('reasons'), dict) and
            isinstance(record.get('targets'), dict) and
            (record.get('halted') is None or isinstance(record.get('halted'), str)))


def _read_own(path):
    with open(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC), 'rb') as f:
        info = os.fstat(f.fileno())
        if info.st_uid != os.geteuid() or info.st_mode & 0o022:
            raise ValueError('owned by uid %d, mode %o: not written by this master'
                             % (info.st_uid, info.st_mode & 0o7777))
        data = f.read(MAX_LISTS_BYTES + 1)
    if len(data) > MAX_LISTS_BYTES:
        raise ValueError('more than %d bytes' % MAX_LISTS_BYTES)
    return jsonfile.loads(data)


def _kept(node, entry):
    body = entry['body'].encode()
    if hashlib.sha256(body).hexdigest() != entry['sha256'] or type(entry['gen']) is not int \
            or type(entry['count']) is not int:
        raise ValueError('the list of node %s does not match its hash' % node)
    return {'gen': entry['gen'], 'sha256': entry['sha256'], 'body': body,
            'count': entry['count']}


def write_lists(state_file, record):
    jsonfile.replace_file(lists_path(state_file), jsonfile.dumps(record).encode(), mode=0o600)


def drop_lists(state_file):
    """Remove the saved lists (gone already: nothing to do)."""
    try:
        os.unlink(lists_path(state_file))
    except FileNotFoundError:
        pass
