"""The client file and the master file."""
import hashlib
import re

from .. import jsonfile
from ..config import (ConfigError, both_or_neither, daemon_keys, decode, default_state_file,
                      read_file, with_file)
from ..plaincheck import plainly_valid
from ..procspec import account_name, parse_process_list
from ..record import Record
from ..schema import REQUIRED, Invalid, Key, Problems, absolute_path, boolean, check_object, \
    integer, json_type, list_of, nested, number, string
from .protocol import MAX_FRAME_BYTES, NODE_PATTERN, body_of
from .rollout import RolloutSpec

ENDPOINT = re.compile(r'(tcp://(\*|\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):([0-9]{1,5})'
                      r'|ipc://[^\0]+)\Z')
HOST_NAME = '%H'
LISTEN_ADDRESS = re.compile(r'(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):([0-9]{1,5})\Z')
PERCENT = re.compile(r'[0-9]{1,3}(\.[0-9]{1,2})?%\Z')
# A master file holds every node's list: 10,000 nodes of 4 processes are 12 MB
# (other files stay within jsonfile's 8 MiB)
MAX_MASTER_FILE_BYTES = 128 * 1024 * 1024


def endpoint(value):
    value = string(value)
    match = ENDPOINT.match(value)
    if not match or (match.group(3) and not 0 < int(match.group(3)) < 65536):
        raise Invalid('must be a ZeroMQ endpoint such as "tcp://192.0.2.1:31123" or '
                      '"ipc:///run/diprocd/stats", not %s' % jsonfile.quote(value))
    return value


def is_local_endpoint(value):
    """True for ipc:// and loopback tcp:// endpoints (no keys needed there)."""
    if value.startswith('ipc://'):
        return True
    host = value[len('tcp://'):].rsplit(':', 1)[0].strip('[]')
    return host in ('localhost', '::1') or host.startswith('127.')


def node_name(value):
    """A node's name: the one pattern of the protocol (`NODE_PATTERN`)."""
    value = string(value)
    if not NODE_PATTERN.match(value):
        raise Invalid('must be 1-253 of A-Z a-z 0-9 . _ - @ :, not %s' % jsonfile.quote(value))
    return value


def _node_name_template(value):
    """A client's node_name: a node name, where %H stands for the host's name."""
    value = string(value)
    if not NODE_PATTERN.match(value.replace(HOST_NAME, 'h')):
        raise Invalid('must be 1-253 of A-Z a-z 0-9 . _ - @ : (and %%H for the host name), '
                      'not %s' % jsonfile.quote(value))
    return value


def _endpoint_keys(stats_rule, updates_rule):
    return (Key('master_stats', 'string', REQUIRED, stats_rule, endpoint),
            Key('master_updates', 'string', REQUIRED, updates_rule, endpoint))


# ------------------------------------------------------------------ client

class ClientConfig(Record):
    path: str
    master_stats: str
    master_updates: str
    node_name: str
    conf_file: str
    pid_file: str = None
    log_file: str = None
    state_file: str = None
    master_public_key: str = None
    secret_key: str = None
    allowed_users: tuple = None
    remote_commands: bool = True
    sha256: str = ''


CLIENT_KEYS = daemon_keys(_endpoint_keys(
    'ZeroMQ endpoint of the master\'s stats socket',
    'ZeroMQ endpoint of the master\'s updates socket') + (
    Key('node_name', 'string', HOST_NAME, 'this node\'s name; `%H` becomes the host name',
        _node_name_template),
    Key('conf_file', 'string', REQUIRED, 'absolute path of the worker file to keep',
        absolute_path),
    Key('master_public_key', 'string', None, 'path of the master\'s public key file; with '
        '`secret_key`', absolute_path),
    Key('secret_key', 'string', None, 'path of this node\'s secret key file (mode 0600); with '
        '`master_public_key`', absolute_path),
    Key('allowed_users', 'list of strings', None, 'users this node accepts from the master; '
        '`root` only when listed', list_of(account_name, max_items=1000),
        default_text='any user except `root`'),
    Key('remote_commands', 'bool', True, 'operators may restart, signal and read the logs of '
        'this node\'s processes through the master (`dpd-ctl --node`)', boolean),
))


def parse_client(doc, path, sha256=''):
    problems = Problems()
    fields = check_object(doc, CLIENT_KEYS, '', problems, ignore_underscore=True)
    if fields is not None:
        both_or_neither(fields, 'master_public_key', 'secret_key', problems)
    if problems:
        raise ConfigError(problems.messages)
    fields['state_file'] = fields['state_file'] or default_state_file(path)
    return ClientConfig(path=path, sha256=sha256, **fields)


def load_client(path):
    data, _ = read_file(path)
    return with_file(path, lambda: parse_client(decode(data), path,
                                                hashlib.sha256(data).hexdigest()))


# ------------------------------------------------------------------ master

class NodeList(Record):
    """One node's list in the master file: its canonical body (what STATE carries)
    and how many processes it has, or why it is invalid. The parsed entries are
    not kept (a thousand nodes' lists are megabytes of dicts): `entries` reads
    them back from the body."""
    errors: tuple = ()
    body: bytes = None
    sha256: str = None
    count: int = 0

    @property
    def valid(self):
        return not self.errors

    @property
    def entries(self):
        """The list's entries (as the body holds them), None when invalid."""
        return None if self.body is None else tuple(jsonfile.loads(self.body))


class MasterConfig(Record):
    path: str
    master_stats: str
    master_updates: str
    nodes: dict                 # node name -> NodeList
    pid_file: str = None
    log_file: str = None
    state_file: str = None
    secret_key: str = None
    authorized_keys: str = None
    metrics_listen: str = None  # "HOST:PORT" of GET /metrics (SPEC 6.4)
    rollout: object = None      # a rollout.RolloutSpec: edits served in waves (SPEC 6.5)
    sha256: str = ''


def _nodes_object(value):
    if not isinstance(value, dict):
        raise Invalid('must be an object of node name -> list of processes, not %s'
                      % json_type(value))
    for name in value:
        node_name(name)
    return value


def _parallel(value):
    """`max_parallel`: a number of nodes, or a percentage of the nodes that change."""
    if isinstance(value, str) and PERCENT.match(value) and 0 < float(value[:-1]) <= 100:
        return value
    if type(value) is int and value >= 1:
        return value
    raise Invalid('must be a number of nodes (1 or more) or a percentage such as "10%%", not '
                  '%s' % jsonfile.dumps(value))


ROLLOUT_KEYS = (
    Key('max_parallel', 'integer or "N%"', REQUIRED, 'nodes changed at once: a number, or a '
        'percentage of the nodes the edit changes', _parallel),
    Key('wait_ready', 'number, seconds', 60.0, 'how long a node of a wave has to report the '
        'new list with every process ready', number(1, 86400)),
    Key('max_failed', 'integer', 0, 'failed nodes tolerated before the rollout halts',
        integer(0, 1000000)),
    Key('auto_revert', 'bool', False, 'a halted rollout gives the failed nodes their previous '
        'list back', boolean),
)


def _listen_address(value):
    value = string(value)
    match = LISTEN_ADDRESS.match(value)
    if not match or not 0 < int(match.group(2)) < 65536:
        raise Invalid('must be "HOST:PORT", such as "127.0.0.1:9640" or "[::]:9640", not %s'
                      % jsonfile.quote(value))
    return value


MASTER_KEYS = daemon_keys(_endpoint_keys(
    'endpoint the master binds for HELLO/REPORT/STATE',
    'endpoint the master binds for notifications') + (
    Key('nodes', 'object', REQUIRED, 'node name → list of PROCESS; a node absent is left alone',
        _nodes_object),
    Key('secret_key', 'string', None, 'the master\'s secret key file (mode 0600); with '
        '`authorized_keys`', absolute_path),
    Key('authorized_keys', 'string', None, 'directory of node public keys, one `NODE.key` per '
        'node; with `secret_key`', absolute_path),
    Key('metrics_listen', 'string', None, '`"HOST:PORT"` (an IPv6 address in brackets) where '
        '`GET /metrics` answers the cluster\'s metrics in the Prometheus text format; read at '
        'start; see Monitoring', _listen_address),
    Key('rollout', 'object', None, 'an edit goes to the nodes it changes in waves: '
        '`max_parallel` (required), `wait_ready`, `max_failed`, `auto_revert`; see "Changing '
        'the fleet safely"', nested(ROLLOUT_KEYS, lambda fields: RolloutSpec(**fields))),
))


def parse_master(doc, path, sha256='', known=None):
    """The master file; a node whose list is invalid is kept with its errors.
    `known`: {node: (canonical text, NodeList)} of lists checked before (the text
    None for a valid list: its body is that text), kept as they are when the text
    is the same (an edit of one node's list checks that list, not all); it is
    updated with this file's lists."""
    problems = Problems()
    fields = check_object(doc, MASTER_KEYS, '', problems, ignore_underscore=True)
    if fields is not None:
        both_or_neither(fields, 'secret_key', 'authorized_keys', problems)
    if problems:
        raise ConfigError(problems.messages)
    checked = {} if known is None else known
    same_text = {}              # canonical text -> this file's valid list of that text
    nodes = {node: _node_list(node, entries, checked, same_text)
             for node, entries in fields.pop('nodes').items()}
    if known is not None:                   # forget the nodes the file no longer has
        for node in [n for n in known if n not in nodes]:
            del known[node]
    fields['state_file'] = fields['state_file'] or default_state_file(path)
    return MasterConfig(path=path, nodes=nodes, sha256=sha256, **fields)


def _node_list(node, entries, checked, same_text):
    """A node's list checked with the worker's rules, and small enough for one
    STATE frame (a list the client would drop unread is refused here, visibly).
    The canonical text decides whether it is the list checked last time: JSON
    types are exact there (Python's 1 == 1.0 == True is not). A valid list of
    the same text as another node's is that node's (nodes that run the same
    services are checked once, and share one body); an invalid one is checked
    for each node, whose path its errors name."""
    try:
        text = jsonfile.dumps(entries)
    except (TypeError, ValueError):         # not from JSON: let the rules say why
        text = None
    seen = checked.get(node)
    if text is not None and seen is not None and _same_text(seen, text):
        listed = seen[1]
    elif text is not None and text in same_text:
        listed = same_text[text]
    else:
        listed = _checked_list(node, entries, text)
    if text is not None:
        checked[node] = (None if listed.valid else text, listed)
        if listed.valid:
            same_text.setdefault(text, listed)
    return listed


def _same_text(seen, text):
    """Whether `seen` (node -> (text or None, NodeList), as `checked` keeps it) was
    checked from `text`. A valid list keeps its text once, as its body's bytes (at
    10,000 nodes a second copy was 13 MB)."""
    kept_text, listed = seen
    return text == kept_text if kept_text is not None else listed.body == text.encode()


def _checked_list(node, entries, text):
    if not plainly_valid(entries, text):
        problems = Problems()
        parse_process_list(entries, _list_path(node), problems, 'nobody')
        if problems:
            return NodeList(errors=tuple(problems.messages))
    body = text.encode() if text is not None else body_of(entries)[0]
    sha256 = hashlib.sha256(body).hexdigest()      # as protocol.body_of
    if len(body) > MAX_FRAME_BYTES:
        return NodeList(errors=('%s: the list is %d bytes on the wire, more than the '
                                'limit of %d' % (_list_path(node), len(body), MAX_FRAME_BYTES),))
    return NodeList(body=body, sha256=sha256, count=len(entries))


def _list_path(node):
    return 'nodes[%s]' % jsonfile.quote(node)


def load_master(path, known=None):
    data, _ = read_file(path, MAX_MASTER_FILE_BYTES)
    return with_file(path, lambda: parse_master(decode(data), path,
                                                hashlib.sha256(data).hexdigest(), known))


class MasterLoader:
    """load_master for the watcher thread (its only user), remembering each node's
    checked list from one load to the next."""

    def __init__(self):
        self.known = {}

    def __call__(self, path):
        return load_master(path, self.known)
