"""dpd-ctl: the operator's tool. Views read state files (`status`, `cluster`);
`keygen` makes keys. Exit statuses: see `view.py`."""
import argparse
import os
import sys

from .. import __version__
from .cluster import cluster
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

def build_parser():
    ap = argparse.ArgumentParser(
        prog='dpd-ctl', description='Status of a diprocd worker or cluster; key generation.',
        epilog='Exit status: 0 all as desired; 3 daemon not running; 4 state unknown; '
               '150 running but something is not as desired; 2 usage error. keygen: 0 or 1.')
    ap.add_argument('--version', action='version', version='dpd-ctl (diprocd) %s' % __version__)
    sub = ap.add_subparsers(dest='command', required=True, metavar='COMMAND')
    p = sub.add_parser('status', help='one line per process of a worker')
    p.add_argument('--json', action='store_true', help='print one JSON object, nothing else')
    p.add_argument('config', metavar='WORKER_CONFIG')
    p = sub.add_parser('cluster', help='one line per node of a master, or per process of one')
    p.add_argument('--json', action='store_true', help='print one JSON object, nothing else')
    p.add_argument('--node', metavar='NODE', help='the processes of this node')
    p.add_argument('config', metavar='MASTER_CONFIG')
    p = sub.add_parser('keygen', help='write DIR/NAME.key and DIR/NAME.key_secret (CURVE)')
    p.add_argument('directory', metavar='DIR')
    p.add_argument('name', metavar='NAME', help='a node name, or e.g. "master"')
    return ap


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.command == 'keygen':
        sys.exit(keygen(args.directory, args.name))
    path = os.path.abspath(args.config)
    if args.command == 'status':
        sys.exit(status(path, args.json))
    sys.exit(cluster(path, args.json, args.node))


if __name__ == '__main__':
    main()
