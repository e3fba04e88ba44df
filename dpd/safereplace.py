"""Files root replaces whole (the worker's metrics_file) in directories others may
control, such as node_exporter's textfile directory.

The directory is reached as pid and log files are (`safefile.open_parent`: no
symlink followed on the way, and below the node policy's directories when it
applies). The new content goes to a temp file created there with O_EXCL and
O_NOFOLLOW, then renamed over the file through the same directory fd: a
reader sees the old file or the new one, never half of one, and a path
swapped during the walk makes the write fail instead of landing elsewhere.
The temp name does not end in `.prom`, so node_exporter never reads it.
"""
import os
import stat

from .safefile import UnsafePath, open_parent

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY


def replace(path, data, confine=None, mode=0o644):
    """Put `data` (bytes) in `path` whole; raise OSError (UnsafePath: refused)."""
    dir_fd, base = open_parent(path, confine)
    try:
        _refuse_other_than_file(dir_fd, base, path)
        tmp = '.%s.%d.tmp' % (base, os.getpid())
        fd = _create(dir_fd, tmp, mode)
        try:
            os.fchmod(fd, mode)          # the umask must not narrow what readers need
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        except BaseException:
            os.close(fd)
            _unlink_quietly(dir_fd, tmp)
            raise
        os.close(fd)
        try:
            os.rename(tmp, base, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            _unlink_quietly(dir_fd, tmp)
            raise
    finally:
        os.close(dir_fd)


def remove(path, confine=None):
    """Remove `path` if it is a regular file (the file was ours; a link or anything
    else someone put there since is left alone). Never raises."""
    try:
        dir_fd, base = open_parent(path, confine)
    except OSError:
        return
    try:
        if stat.S_ISREG(os.lstat(base, dir_fd=dir_fd).st_mode):
            os.unlink(base, dir_fd=dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def _refuse_other_than_file(dir_fd, base, path):
    """The rename would not follow a link, but a link, a directory or a FIFO there
    is someone else's, not a file to replace."""
    try:
        info = os.lstat(base, dir_fd=dir_fd)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode):
        raise UnsafePath('%s: refused: it is a symbolic link' % path)
    if not stat.S_ISREG(info.st_mode):
        raise UnsafePath('%s: refused: not a regular file' % path)


def _create(dir_fd, tmp, mode):
    """The temp file, new; one left by a worker that died mid-write is removed first."""
    try:
        return os.open(tmp, _CREATE, mode, dir_fd=dir_fd)
    except FileExistsError:
        os.unlink(tmp, dir_fd=dir_fd)
        return os.open(tmp, _CREATE, mode, dir_fd=dir_fd)


def _unlink_quietly(dir_fd, name):
    try:
        os.unlink(name, dir_fd=dir_fd)
    except OSError:
        pass
