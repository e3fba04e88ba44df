"""The README's configuration reference, generated from the schemas.

`python3 -m dpd.reference` prints it; `python3 -m dpd.reference --update README`
rewrites the part of README between the markers. A test keeps them equal.
"""
import sys

from .cluster.config import CLIENT_KEYS, MASTER_KEYS
from .healthspec import HEALTH_KEYS
from .limitspec import LIMIT_KEYS
from .nodepolicy import POLICY_KEYS
from .worker.config import WORKER_KEYS
from .procspec import EXTENSION_KEYS, PROCESS_KEYS
from .schema import reference_table

START, END = '<!-- reference:start -->', '<!-- reference:end -->'


def markdown():
    seed_keys = tuple(k for k in PROCESS_KEYS if k.name not in EXTENSION_KEYS)
    extensions = tuple(k for k in PROCESS_KEYS if k.name in EXTENSION_KEYS)
    return '\n\n'.join([
        '#### Worker file (`dpd-workerd CONFIG`)',
        reference_table(WORKER_KEYS),
        'Top-level keys starting with `_` belong to other tools (the client records what it '
        'applied in `_diprocd`) and are ignored. Any other unknown key is an error.',
        '#### PROCESS (an entry of `procs`, or of a node\'s list in the master file)',
        reference_table(seed_keys),
        'Extensions (beyond the original program\'s keys):',
        reference_table(extensions),
        '`health`, an object of exactly one probe (`exec`, `tcp` or `http`) and:',
        reference_table(HEALTH_KEYS),
        '`limits`, an object of:',
        reference_table(LIMIT_KEYS),
        'A size is an integer of bytes or a string of digits with one binary suffix `K`, '
        '`M`, `G` or `T` (`"512M"`, `"2G"`); anything else (`"12Q"`, `"1.5G"`, `"512m"`, a '
        'negative number) is an error. The rlimits work everywhere; the others need a root '
        'worker with cgroups (see "Limits and cgroups"): where a limit cannot be enforced, the '
        'process is `failed` saying which.',
        '#### Client file (`dpd-clientd CONFIG`)',
        reference_table(CLIENT_KEYS),
        '#### Master file (`dpd-masterd CONFIG`)',
        reference_table(MASTER_KEYS),
        '#### Node policy (`--policy FILE` of the worker and the client)',
        reference_table(POLICY_KEYS),
        'Keys starting with `_` are comments. Any other unknown key is an error.',
    ])


def update(path):
    with open(path) as f:
        text = f.read()
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    with open(path, 'w') as f:
        f.write('%s%s\n%s\n%s%s' % (head, START, markdown(), END, tail))


if __name__ == '__main__':
    if sys.argv[1:2] == ['--update']:
        update(sys.argv[2])
    else:
        print(markdown())
