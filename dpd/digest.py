"""SHA-256 for the worker, without OpenSSL: `hashlib` maps libcrypto, 3.7 MiB of
a worker's memory (a tenth of it with a thousand processes) for a few small
hashes (its file, each process's definition). The interpreter's own SHA-256 is
slower on megabytes, so the master and the client, which hash every node's list
at each edit, keep hashlib's."""
try:
    from _sha2 import sha256          # Python 3.12 and later
except ImportError:
    try:
        from _sha256 import sha256    # Python 3.11
    except ImportError:               # an interpreter built without them
        from hashlib import sha256


def sha256_hex(data):
    return sha256(data).hexdigest()
