"""CURVE keys in ZeroMQ's certificate format: loading them safely, making them.

A secret key file readable by anyone but its owner is refused: it would let
others pose as the master (who can make root run anything on every node) or
as a node (who can read that node's secrets).
"""
import os
import stat

import zmq.auth

from .protocol import NODE_PATTERN

SUFFIX = '.key'


class KeyProblem(Exception):
    pass


def load_secret(path):
    """(public, secret) z85 keys from a `.key_secret` file of mode 0600 (or 0400)."""
    try:
        info = os.stat(path)
    except OSError as err:
        raise KeyProblem('%s: cannot read the secret key: %s' % (path, err.strerror)) from None
    if info.st_mode & 0o077:
        raise KeyProblem('%s: refused: the secret key is readable by others (mode %04o); '
                         'chmod 600 it' % (path, stat.S_IMODE(info.st_mode)))
    public, secret = _load(path)
    if not secret:
        raise KeyProblem('%s: not a secret key file (no secret-key line)' % path)
    return public, secret


def load_public(path):
    public, _ = _load(path)
    return public


def _load(path):
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as err:
        raise KeyProblem('%s: not a ZeroMQ certificate: %s' % (path, err)) from None
    if not public or len(public) != 40:
        raise KeyProblem('%s: no valid public-key line' % path)
    return public, secret


def load_authorized(directory):
    """{public key: node name} from NODE.key files; one node, one key."""
    try:
        names = sorted(os.listdir(directory))
    except OSError as err:
        raise KeyProblem('%s: cannot read authorized keys: %s' % (directory, err.strerror)) \
            from None
    keys = {}
    for name in names:
        node = name[:-len(SUFFIX)]
        if not name.endswith(SUFFIX) or not NODE_PATTERN.match(node):
            continue
        public = load_public(os.path.join(directory, name))
        if public in keys:
            raise KeyProblem('%s: the same key is authorized for nodes "%s" and "%s"'
                             % (directory, keys[public], node))
        keys[public] = node
    return keys


def keygen(directory, name):
    """Write NAME.key (public, 0644) and NAME.key_secret (0600); return both paths."""
    if not NODE_PATTERN.match(name):
        raise KeyProblem('"%s" is not a valid node name' % name)
    os.makedirs(directory, 0o755, exist_ok=True)
    public_path = os.path.join(directory, name + SUFFIX)
    secret_path = public_path + '_secret'
    for path in (public_path, secret_path):
        if os.path.lexists(path):
            raise KeyProblem('%s exists already; not overwriting a key' % path)
    old = os.umask(0o077)
    try:
        zmq.auth.create_certificates(directory, name)
    finally:
        os.umask(old)
    os.chmod(public_path, 0o644)
    os.chmod(secret_path, 0o600)
    return public_path, secret_path
