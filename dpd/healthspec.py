"""PROCESS key `health` (SPEC 6.1): one probe, and when and how often to run it.

Pure: JSON in, a frozen `HealthSpec` out (or Invalid). Running probes is the
worker's business (worker/probes.py, worker/health.py).
"""
import ipaddress
import re

from . import jsonfile
from .record import Record
from .schema import Invalid, InvalidObject, Key, PathProblems, check_object, list_of, \
    number, string

PROBES = ('exec', 'tcp', 'http')
_HOST = r'(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)'
HOST_BYTES = 253            # a DNS name, dots included
LABEL_BYTES = 63            # each part between two dots
_TCP = re.compile(_HOST + r':(?P<port>[0-9]{1,5})\Z')
_HTTP = re.compile(r'http://' + _HOST + r'(?::(?P<port>[0-9]{1,5}))?(?P<path>/[^\s]*)?\Z')


class Probe(Record):
    kind: str                  # exec, tcp or http
    argv: tuple = ()           # exec: the program (absolute) and its arguments
    host: str = None           # tcp, http
    port: int = None
    path: str = '/'            # http

    @property
    def text(self):
        """As the file said it: for messages."""
        if self.kind == 'exec':
            return ' '.join(self.argv)
        host = '[%s]' % self.host if ':' in self.host else self.host
        if self.kind == 'tcp':
            return '%s:%d' % (host, self.port)
        return 'http://%s:%d%s' % (host, self.port, self.path)


class HealthSpec(Record):
    probe: Probe
    interval: float = 10.0
    timeout: float = 5.0
    retries: int = 3
    start_period: float = 30.0
    on_unhealthy: str = 'restart'

    @property
    def record(self):
        """As JSON, for records (state file, adoption) and fingerprints."""
        probe = self.probe
        target = list(probe.argv) if probe.kind == 'exec' else probe.text
        return {probe.kind: target, 'interval': self.interval, 'timeout': self.timeout,
                'retries': self.retries, 'start_period': self.start_period,
                'on_unhealthy': self.on_unhealthy}


def _port(text):
    port = int(text)
    if not 0 < port < 65536:
        raise Invalid('has port %d, not 1-65535' % port)
    return port


def _host(text):
    """The host of HOST:PORT, checked in the file: a name getaddrinfo cannot even
    encode ("a..b") would otherwise pass `-t` and fail at every check. An IPv4
    address is a name of short labels; an IPv6 one comes in brackets."""
    if text.startswith('['):
        host = text[1:-1]
        if not _is_ip_address(host):
            raise Invalid('has host %s, not an IP address' % jsonfile.quote(text))
        return host
    problem = _name_problem(text)
    if problem:
        raise Invalid('has host %s: %s' % (jsonfile.quote(text), problem))
    return text


def _is_ip_address(text):
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _name_problem(name):
    """Why `name` is not a DNS name (None if it is): what getaddrinfo's IDNA
    encoding (Python's) rejects, and what no resolver answers."""
    if len(name) > HOST_BYTES:
        return '%d characters, more than %d' % (len(name), HOST_BYTES)
    rule = 'each part between dots must be 1-%d characters' % LABEL_BYTES
    absolute = name.endswith('.') and name != '.'      # "db.example." is a full name
    for label in (name[:-1] if absolute else name).split('.'):
        if not label:
            return 'an empty label; ' + rule
        if len(label) > LABEL_BYTES:
            return 'a label of %d characters; %s' % (len(label), rule)
    return None


def _exec(value):
    argv = list_of(string, max_items=256)(value)
    if not argv or not argv[0].startswith('/'):
        raise Invalid('must be a list of strings, the first an absolute program path')
    return Probe('exec', argv=argv)


def _tcp(value):
    match = _TCP.match(string(value))
    if not match:
        raise Invalid('must be "HOST:PORT", such as "127.0.0.1:8080", not %s'
                      % jsonfile.quote(value))
    return Probe('tcp', host=_host(match.group('host')), port=_port(match.group('port')))


def _http(value):
    match = _HTTP.match(string(value))
    if not match:
        raise Invalid('must be "http://HOST:PORT/PATH", such as "http://127.0.0.1:8080/health", '
                      'not %s' % jsonfile.quote(value))
    return Probe('http', host=_host(match.group('host')), port=_port(match.group('port') or 80),
                 path=match.group('path') or '/')


def _whole(low, high):
    def check(value):
        if type(value) is not int or not low <= value <= high:
            raise Invalid('must be an integer from %d to %d, not %s'
                          % (low, high, jsonfile.dumps(value)))
        return value
    return check


def _on_unhealthy(value):
    if value not in ('restart', 'none'):
        raise Invalid('must be "restart" or "none", not %s' % jsonfile.quote(value))
    return value


HEALTH_KEYS = (
    Key('exec', 'list of strings', None, 'passes when the program exits 0; run as the process '
        'is (user, group, chroot, cwd, env)', _exec),
    Key('tcp', 'string', None, '`"HOST:PORT"`: passes when a connection is accepted; HOST is '
        'an IP address (IPv6 in brackets) or a name of dot-separated labels of 1-63 '
        'characters, 253 in all', _tcp),
    Key('http', 'string', None, '`"http://HOST:PORT/PATH"`: passes on a 2xx or 3xx answer; '
        'HOST as for `tcp`', _http),
    Key('interval', 'number, seconds', 10.0, 'between two checks', number(0.1, 86400)),
    Key('timeout', 'number, seconds', 5.0, 'a check slower than this fails (at most '
        '`interval`); an `exec` check is killed with its group', number(0.01, 86400),
        default_text='5, or `interval` if shorter'),
    Key('retries', 'integer', 3, 'consecutive failures that make the process unhealthy',
        _whole(1, 1000)),
    Key('start_period', 'number, seconds', 30.0, 'a process not ready by then is unhealthy; '
        'failures before the first pass do not count', number(0, 86400)),
    Key('on_unhealthy', 'string', 'restart', '`"restart"` (counted as a crash) or `"none"`',
        _on_unhealthy),
)


def health(value):
    """The checker of PROCESS key `health`: exactly one probe, timeout <= interval."""
    problems = PathProblems()
    fields = check_object(value, HEALTH_KEYS, '', problems)
    if fields is not None:
        probes = [kind for kind in PROBES if fields.get(kind) is not None]
        if len(probes) != 1 and not any(p.startswith(PROBES) for p, _ in problems.pairs):
            problems.add('', 'needs exactly one probe: "exec", "tcp" or "http" (%s given)'
                         % (', '.join('"%s"' % p for p in probes) or 'none'))
        timeout, interval = fields.get('timeout'), fields.get('interval')
        if isinstance(value, dict) and 'timeout' not in value and interval is not None:
            fields['timeout'] = timeout = min(timeout, interval)   # the default fits
        if None not in (timeout, interval) and timeout > interval:
            problems.add('timeout', 'must be at most interval (%s s), not %s s'
                         % (seconds_text(interval), seconds_text(timeout)))
    if problems:
        raise InvalidObject(problems.pairs)
    probe = next(fields[kind] for kind in PROBES if fields.get(kind) is not None)
    return HealthSpec(probe, **{k: fields[k] for k in ('interval', 'timeout', 'retries',
                                                         'start_period', 'on_unhealthy')})


def seconds_text(value):
    """A number of seconds as people write it: 5, 0.5."""
    return ('%d' % value) if float(value).is_integer() else repr(value)

