"""dpd-ctl: the operator's tool. Views read state files (`status`, `cluster`);
operations ask a daemon (`restart`, `signal`; `logs` reads the file here, or
asks through the master with --node); `keygen` makes keys. Exit statuses:
see `view.py` and `commands.py`."""
import argparse
import os
import sys

from .. import __version__, requests
from . import commands
from .cluster import cluster
from .logs import logs
from .plan import plan
from .status import status


# ------------------------------------------------------------------ keygen

def keygen(directory, name, out=sys.stdout):
    from ..cluster.keys import KeyProblem, keygen as make_keys
    try:
        public, secret = make_keys(directory, name)
    except (KeyProblem, OSError) as err:
        sys.stderr.write('dpd-ctl: %s\n' % err)
        return 1
    out.write('%s (public, 0644)\n%s (secret, 0600: keep it on %s only)\n'
              % (public, secret, name))
    return 0


# ------------------------------------------------------------------ command line

WORKER_CONFIG = '/var/lib/diprocd/diprocd-worker.json'
MASTER_CONFIG = '/var/lib/diprocd/diprocd-master.json'


def build_parser():
    ap = argparse.ArgumentParser(
        prog='dpd-ctl', description='Status and operations of a diprocd worker or cluster; '
        'key generation.',
        epilog='Exit status of status and cluster: 0 all as desired; 3 daemon not running; '
               '4 state unknown; 150 running but something is not as desired; 2 usage error. '
               'Of restart, signal and logs: 0 done; 1 refused or failed (said why); 2 usage; '
               '3 daemon not running. Of plan: 0 nothing changes, 2 something changes, 78 '
               'NEWFILE is invalid, 1 other errors. keygen: 0 or 1.')
    ap.add_argument('--version', action='version', version='dpd-ctl (diprocd) %s' % __version__)
    sub = ap.add_subparsers(dest='command', required=True, metavar='COMMAND')
    p = sub.add_parser('status', help='one line per process of a worker')
    _config_arguments(p, 'WORKER_CONFIG', positional=True)
    p.add_argument('--json', action='store_true', help='print one JSON object, nothing else')
    p = sub.add_parser('cluster', help='one line per node of a master, or per process of one')
    _config_arguments(p, 'MASTER_CONFIG', positional=True)
    p.add_argument('--json', action='store_true', help='print one JSON object, nothing else')
    p.add_argument('--node', metavar='NODE', help='the processes of this node')
    p = sub.add_parser('restart', help='stop processes and start them again now; wait until '
                       'they are ready')
    _operation_arguments(p)
    p.add_argument('--json', action='store_true', help='print the answer as one JSON object')
    p.add_argument('names', metavar='NAME', nargs='+')
    p = sub.add_parser('signal', help='send a signal to processes (HUP, USR1, ...)')
    _operation_arguments(p)
    p.add_argument('--all', action='store_true', help='to every process of its group or '
                   'cgroup, not only the main one')
    p.add_argument('--json', action='store_true', help='print the answer as one JSON object')
    p.add_argument('signal', metavar='SIGNAL')
    p.add_argument('names', metavar='NAME', nargs='+')
    p = sub.add_parser('logs', help='the last lines of a process\'s log file; -f follows it')
    _operation_arguments(p)
    p.add_argument('-n', '--lines', type=int, default=requests.DEFAULT_LINES, metavar='N',
                   help='how many lines back (default %d)' % requests.DEFAULT_LINES)
    p.add_argument('-f', '--follow', action='store_true', help='then print what is appended, '
                   'across rotation, until interrupted')
    p.add_argument('name', metavar='NAME')
    p = sub.add_parser('plan', help='what a master file would change on each node, before '
                       'it is saved')
    _config_arguments(p, 'MASTER_CONFIG')
    p.add_argument('--json', action='store_true', help='print one JSON object, nothing else')
    p.add_argument('newfile', metavar='NEWFILE', nargs='?', help='the file to compare '
                   '(default: the master file as it is on disk)')
    p = sub.add_parser('keygen', help='write DIR/NAME.key and DIR/NAME.key_secret (CURVE)')
    p.add_argument('directory', metavar='DIR')
    p.add_argument('name', metavar='NAME', help='a node name, or e.g. "master"')
    return ap


def _config_arguments(p, metavar, positional=False):
    p.add_argument('-c', '--config', dest='option_config', metavar=metavar,
                   help='the daemon\'s config file (default %s)'
                   % (WORKER_CONFIG if metavar == 'WORKER_CONFIG' else MASTER_CONFIG))
    if positional:
        p.add_argument('config', metavar=metavar, nargs='?', help='the same, as in round one')


def _operation_arguments(p):
    _config_arguments(p, 'CONFIG')
    p.add_argument('--node', metavar='NODE', help='on this node, through the master '
                   '(CONFIG is then the master\'s, default %s)' % MASTER_CONFIG)


def config_of(args, master):
    given = getattr(args, 'config', None) or args.option_config
    return os.path.abspath(given or (MASTER_CONFIG if master else WORKER_CONFIG))


def main(argv=None):
    ap = build_parser()
    args = ap.parse_args(argv)
    if args.command == 'keygen':
        sys.exit(keygen(args.directory, args.name))
    if args.command == 'status':
        sys.exit(status(config_of(args, False), args.json))
    if args.command == 'cluster':
        sys.exit(cluster(config_of(args, True), args.json, args.node))
    if args.command == 'plan':
        sys.exit(plan(config_of(args, True), args.newfile and os.path.abspath(args.newfile),
                      args.json))
    sys.exit(operate(ap, args))


def operate(ap, args):
    """restart, signal, logs: here, or with --node through the master."""
    path = config_of(args, master=args.node is not None)
    if args.command == 'logs' and args.lines < 0:
        ap.error('-n: a number of lines, 0 or more')
    if args.command == 'logs' and args.node is None:
        return logs(path, args.name, args.lines, args.follow)
    try:
        request = commands.parse_request(
            args.command, getattr(args, 'names', None) or [args.name], node=args.node,
            signal=getattr(args, 'signal', None), all=getattr(args, 'all', None),
            lines=getattr(args, 'lines', None), follow=getattr(args, 'follow', None))
    except requests.BadRequest as err:
        ap.error(str(err))
    program = 'dpd-masterd' if args.node else 'dpd-workerd'
    try:
        return commands.run(path, request, program, getattr(args, 'json', False))
    except KeyboardInterrupt:
        return 0 if args.command == 'logs' else 1


if __name__ == '__main__':
    main()
