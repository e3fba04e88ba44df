"""Pid and log files created by root in directories others may control.

Never follow a symlink in the last component, nor one in a parent that
anyone but root (or the daemon's own user) made; never write into or
truncate a file that belongs to someone else or has other links: a planted
link or file is an error, not a write. Directories are walked one component
at a time with O_NOFOLLOW, each link on the way checked before it is
followed, so a swap during the walk makes it fail instead of leading
elsewhere.

`confine` (the node policy's directories, SPEC 5.1) is the last guard: the
directory the walk really reached, as the kernel names it, must lie below one
of them, whatever was checked when the file was loaded.
"""
import errno
import os
import re
import stat

_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
MAX_LINKS = 40                  # links followed in one walk, as the kernel's own limit
_PID_TEXT = re.compile(rb'\s*([0-9]{1,10})\s*\Z')


class UnsafePath(OSError):
    pass


def open_parent(path, confine=None, shared=False):
    """(fd of the directory holding `path`, last component); close the fd after use.
    `shared`: a world-writable directory without the sticky bit will do (a file
    replaced by rename there is never one someone else put in its place).

    A symlink among the directories (say /var/run -> /run) is followed only if
    root or the daemon's own user owns it: a user who owns a directory on the
    way could otherwise swap it for a link to /etc.
    """
    directory, base = os.path.split(path)
    if not base or base in ('.', '..'):
        raise UnsafePath('%s: not a file name' % path)
    directory = directory or '/'
    try:
        fd = _walk(directory, path)
    except UnsafePath:
        raise
    except OSError as err:
        raise UnsafePath('%s: directory %s: %s' % (path, directory, err.strerror)) from None
    try:
        if not shared:
            _check_directory(fd, path, directory)
        if confine is not None:
            _check_confined(fd, path, confine)
    except BaseException:
        os.close(fd)
        raise
    return fd, base


def _walk(directory, path):
    """An O_PATH fd on `directory`, reached one component at a time; a symlink
    on the way is followed (from where it lies) only if it is trusted."""
    parts = [p for p in directory.split('/') if p]
    parts.reverse()                     # a stack: a link's target goes on top
    fd, links = os.open('/', _DIR_FLAGS), 0
    try:
        while parts:
            part = parts.pop()
            try:
                next_fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except NotADirectoryError:
                target = _trusted_link(fd, part, path)
                links += 1
                if links > MAX_LINKS:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP)) from None
                parts.extend(reversed([p for p in target.split('/') if p]))
                if target.startswith('/'):
                    next_fd = os.open('/', _DIR_FLAGS)
                else:
                    continue
            os.close(fd)
            fd = next_fd
        return fd
    except BaseException:
        os.close(fd)
        raise


def _trusted_link(dir_fd, name, path):
    """The target of symlink `name`, if root or we own it (else UnsafePath); a
    component that is not a link at all is not a directory."""
    info = os.lstat(name, dir_fd=dir_fd)
    if not stat.S_ISLNK(info.st_mode):
        raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
    if info.st_uid not in (0, os.geteuid()):
        raise UnsafePath('%s: refused: directory %s on the way is a symbolic link of uid %d '
                         '(followed only if root\'s)' % (path, name, info.st_uid))
    return os.readlink(name, dir_fd=dir_fd)


def _check_directory(fd, path, real):
    info = os.fstat(fd)
    if info.st_mode & 0o002 and not info.st_mode & stat.S_ISVTX and os.geteuid() == 0:
        raise UnsafePath('%s: refused: directory %s is world-writable and not sticky'
                         % (path, real))


def is_below(path, directories):
    """True if `path` is one of `directories` or inside one (no I/O)."""
    return any(path == d or path.startswith(d.rstrip('/') + '/') for d in directories)


def _check_confined(fd, path, confine):
    reached = os.readlink('/proc/self/fd/%d' % fd)
    if not is_below(reached, confine):
        raise UnsafePath('%s: refused: it leads to %s, outside the node policy\'s allowed_paths'
                         % (path, reached))


def _refuse_link(dir_fd, base, path):
    try:
        info = os.lstat(base, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(info.st_mode):
        raise UnsafePath('%s: refused: it is a symbolic link' % path)
    return info


class PidFileSlot:
    """The place of a pid file, checked before the process starts, written after.

    The directory is walked once. The file is opened without following a link
    and rewritten in place only if it is a regular file of ours with one link:
    a planted link or a stranger's file is an error, never a write. The new
    pid is written before the old tail is cut, so a reader never sees an
    empty file.
    """

    def __init__(self, path, confine=None):
        self.path = path
        self.dir_fd, self.base = open_parent(path, confine)
        try:
            _refuse_link(self.dir_fd, self.base, path)
        except BaseException:
            self.close()
            raise

    def write(self, pid):
        try:
            fd = os.open(self.base, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC |
                         os.O_NONBLOCK, 0o644, dir_fd=self.dir_fd)
        except OSError as err:
            if err.errno == errno.ELOOP:
                raise UnsafePath('%s: refused: it is a symbolic link' % self.path) from None
            raise
        try:
            _check_own_file(fd, self.path, {os.geteuid()})
            data = b'%d\n' % pid
            os.pwrite(fd, data, 0)
            os.ftruncate(fd, len(data))
        finally:
            os.close(fd)

    def close(self):
        if self.dir_fd is not None:
            os.close(self.dir_fd)
            self.dir_fd = None


def _check_own_file(fd, path, owners):
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise UnsafePath('%s: refused: not a regular file' % path)
    if info.st_nlink != 1:
        raise UnsafePath('%s: refused: it has %d hard links' % (path, info.st_nlink))
    if info.st_uid not in owners:
        raise UnsafePath('%s: refused: owned by uid %d, not by the worker or the '
                         'process\'s user' % (path, info.st_uid))


def remove_pid_file(path, pid, confine=None):
    """Remove `path` if it still names `pid` (a new owner may have replaced it)."""
    try:
        dir_fd, base = open_parent(path, confine)
    except OSError:
        return
    try:
        fd = os.open(base, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK,
                     dir_fd=dir_fd)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return
            content = os.read(fd, 64)
        finally:
            os.close(fd)
        if content.strip() == b'%d' % pid:
            os.unlink(base, dir_fd=dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def read_pid_file(path, confine=None):
    """The pid a program wrote in `path`, or None if there is none yet. Read the
    way pid and log files are written: no link followed, never blocking (a FIFO
    or a device in its place is an error, not a wait)."""
    dir_fd, base = open_parent(path, confine)
    try:
        fd = os.open(base, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK |
                     os.O_NOCTTY, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise UnsafePath('%s: refused: it is a symbolic link' % path) from None
        raise
    finally:
        os.close(dir_fd)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnsafePath('%s: refused: not a regular file' % path)
        return parse_pid(os.read(fd, 64))
    finally:
        os.close(fd)


def parse_pid(data):
    """A pid from pid-file bytes: digits only, 1 < pid < 2**22; else None."""
    match = _PID_TEXT.match(data)
    if not match:
        return None
    pid = int(match.group(1))
    return pid if 1 < pid <= 4194304 else None


def open_log(path, owners, append=False, confine=None):
    """A write fd on log file `path`, created 0640 if missing.

    The file must be a regular file with one link, owned by one of `owners`
    (uids): appending to a stranger's file, or to a hard link of one, is how
    a root daemon gets tricked into writing where it should not. Without
    `append` the caller places each write itself (the pumps' splice).
    """
    return _open_own_file(path, owners, os.O_WRONLY | os.O_CREAT |
                          (os.O_APPEND if append else 0), confine)


def open_log_reader(path, owners, confine=None):
    """A read fd on log file `path`, under the rules `open_log` writes it with: what
    root reads for an operator is the log it writes, not a file a link points to."""
    return _open_own_file(path, owners, os.O_RDONLY, confine)


def _open_own_file(path, owners, flags, confine):
    dir_fd, base = open_parent(path, confine)
    try:
        fd = os.open(base, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK,
                     0o640, dir_fd=dir_fd)
    except OSError as err:
        if err.errno == errno.ELOOP:  # the last component is a symlink
            raise UnsafePath('%s: refused: it is a symbolic link' % path) from None
        raise
    finally:
        os.close(dir_fd)
    try:
        _check_own_file(fd, path, owners)
        os.set_blocking(fd, True)
        return fd
    except BaseException:
        os.close(fd)
        raise


def check_owned(fd, path):
    """`path` (open on `fd`) is ours alone: a regular file or directory of this
    user that nobody else can write (SPEC 5.2: what a daemon derives from its
    config's path is its own, never a file someone else planted)."""
    info = os.fstat(fd)
    if info.st_uid != os.geteuid():
        raise UnsafePath('%s: refused: owned by uid %d, not by this daemon\'s user (uid %d)'
                         % (path, info.st_uid, os.geteuid()))
    if info.st_mode & 0o022:
        raise UnsafePath('%s: refused: writable by group or others (mode %04o)'
                         % (path, stat.S_IMODE(info.st_mode)))
    if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
        raise UnsafePath('%s: refused: not a regular file or directory' % path)


def check_owned_paths(paths):
    """check_owned for each of `paths` that exists (a symbolic link is refused)."""
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC |
                         os.O_NOCTTY)
        except FileNotFoundError:
            continue
        except OSError as err:
            if err.errno == errno.ELOOP:
                raise UnsafePath('%s: refused: it is a symbolic link' % path) from None
            raise UnsafePath('%s: %s' % (path, err.strerror)) from None
        try:
            check_owned(fd, path)
        finally:
            os.close(fd)


def file_stamp(path):
    """What changes when `path` is written, replaced or re-permissioned (None if it
    is not there): compared, not read, by whoever wants to know."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_mode,
            info.st_uid, info.st_ctime_ns)


def same_file(fd, path):
    """True while `path` still names the file open on `fd` (not moved or replaced)."""
    if fd is None:
        return False
    try:
        on_disk, held = os.stat(path), os.fstat(fd)
    except OSError:
        return False
    return (on_disk.st_dev, on_disk.st_ino) == (held.st_dev, held.st_ino)
