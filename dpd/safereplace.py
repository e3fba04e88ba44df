"""Files root replaces whole in directories others may control: the worker's
metrics_file (node_exporter's textfile directory), and every JSON file a daemon
writes (state files, the worker file the client writes: `jsonfile.replace_file`).

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


def replace(path, data, confine=None, mode=0o644, durable=False, shared=False):
    """Put `data` (bytes) in `path` whole; raise OSError (UnsafePath: refused).
    `durable` adds the fsyncs that make the new content survive a power cut;
    `shared` allows a world-writable directory without the sticky bit."""
    dir_fd, base = open_parent(path, confine, shared)
    try:
        _refuse_other_than_file(dir_fd, base, path)
        tmp, fd = _create(dir_fd, base, mode)
        try:
            if stat.S_IMODE(os.fstat(fd).st_mode) != mode:
                # the umask narrowed what readers need (an fchmod of the same mode
                # would still wake every inotify watch of the directory)
                os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if durable:
                os.fsync(fd)
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
        if durable:
            _fsync_directory(dir_fd)
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


def _create(dir_fd, base, mode):
    """(name, fd) of a new temp file. One left by a daemon that died mid-write is
    removed first; if the name is taken again at once (someone who may write
    the directory keeps it taken), a name nobody can guess is used instead."""
    tmp = '.%s.%d.tmp' % (base, os.getpid())
    try:
        return tmp, os.open(tmp, _CREATE, mode, dir_fd=dir_fd)
    except FileExistsError:
        _unlink_quietly(dir_fd, tmp)
    try:
        return tmp, os.open(tmp, _CREATE, mode, dir_fd=dir_fd)
    except FileExistsError:
        tmp = '.%s.%d.%s.tmp' % (base, os.getpid(), os.urandom(8).hex())
        return tmp, os.open(tmp, _CREATE, mode, dir_fd=dir_fd)


def _fsync_directory(dir_fd):
    fd = os.open('.', os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_quietly(dir_fd, name):
    try:
        os.unlink(name, dir_fd=dir_fd)
    except OSError:
        pass
