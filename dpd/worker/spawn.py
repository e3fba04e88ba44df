"""How a ProcessSpec becomes a running child.

Everything is configured through `Popen` keywords (no `preexec_fn`: the
worker has threads, and arbitrary Python between fork and exec can
deadlock). `chroot` has no keyword, so a chrooted process goes through a
tiny launcher (`launcher.py`, its own single-threaded interpreter) that
chroots, changes directory, drops privileges and execs.

Every other process is started by vfork. Python forks instead (copying the
whole worker, about 1 ms of the worker's CPU) as soon as Popen must change
uid, gid or groups, so a root worker hands that switch to util-linux's
`setpriv` in the child: vfork, exec setpriv, which switches and execs the
program, in the same pid. Without setpriv, Popen switches itself.

setpriv and prlimit run as root with the process's environment. Variables
that the dynamic loader or the C library read (LD_PRELOAD...) would make
them run the file author's code as root, so a process whose environment
has one takes a way where no root program sees it: Popen switches itself,
or with limits to set too, the launcher (which gets its job on a memfd).
"""
import errno
import grp
import json
import os
import pwd
import re
import resource
import stat
import subprocess
import sys
import time

from ..procspec import CLEAN_PATH
from ..safefile import file_stamp
from ..record import Record

LAUNCHER = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'launcher.py')
SETPRIV = next((path for path in ('/usr/bin/setpriv', '/bin/setpriv')
                if os.access(path, os.X_OK)), None)
PRLIMIT = next((path for path in ('/usr/bin/prlimit', '/bin/prlimit')
                if os.access(path, os.X_OK)), None)
# Read by ld.so or glibc in any program (glibc's own list for setuid programs,
# and more): code, data or parsers they would load. Broad on purpose: a match
# only makes the start take the slower way, it drops nothing.
ROOT_UNSAFE_ENV = re.compile(
    r'LD_|GCONV|GLIBC_|MALLOC_|LOCPATH\Z|NLSPATH\Z|TZ|RES_OPTIONS\Z|LOCALDOMAIN\Z|'
    r'HOSTALIASES\Z|RESOLV_|NIS_PATH\Z|GETCONF_DIR\Z|TMPDIR\Z')


class SpawnError(Exception):
    pass


class Identity(Record):
    """Who the child runs as: uid, gid and every group, plus its passwd entry."""
    user: str
    uid: int
    gid: int
    groups: tuple
    home: str
    shell: str

    def is_current(self):
        """True when no switch is needed (the fast vfork path); the primary gid may
        or may not be listed among a process's groups, so it is added to both."""
        return (self.uid == os.geteuid() and self.gid == os.getegid()
                and set(self.groups) | {self.gid} == set(os.getgroups()) | {os.getegid()})


def identity(spec):
    try:
        entry = pwd.getpwnam(spec.user)
    except KeyError:
        raise SpawnError('no such user "%s"' % spec.user) from None
    if os.geteuid() != 0 and entry.pw_uid != os.geteuid():
        raise SpawnError('cannot run as "%s": a worker that is not root runs processes as '
                         'itself only' % spec.user)
    gid = entry.pw_gid
    if spec.group is not None:
        try:
            gid = grp.getgrnam(spec.group).gr_gid
        except KeyError:
            raise SpawnError('no such group "%s"' % spec.group) from None
    # Popen(user=...) alone would keep root's groups: name every group explicitly
    groups = tuple(sorted(set(os.getgrouplist(entry.pw_name, entry.pw_gid)) | {gid}))
    return Identity(entry.pw_name, entry.pw_uid, gid, groups, entry.pw_dir,
                    entry.pw_shell or '/bin/sh')


class Identities:
    """identity(), remembered while /etc/passwd and /etc/group are unchanged, and
    for MAX_AGE seconds at most: getpwnam and getgrouplist read both files at
    every call, a tenth of a start's cost; a thousand processes of one user are
    looked up once. An edit of either file counts at the next start; a change
    in a directory service (LDAP, sssd) within MAX_AGE seconds."""
    MAX_AGE = 5.0
    FILES = ('/etc/passwd', '/etc/group')

    def __init__(self):
        self._known = {}        # (user, group) -> (Identity, the files' signature, until)

    def of(self, spec):
        key, now = (spec.user, spec.group), time.monotonic()
        signature = tuple(map(file_stamp, self.FILES))
        known = self._known.get(key)
        if known is not None and known[1] == signature and now < known[2]:
            return known[0]
        who = identity(spec)
        self._known[key] = (who, signature, now + self.MAX_AGE)
        return who


def environment(spec, who, extra=None):
    """The clean environment: nothing of the worker's own leaks into a child;
    `extra` (the worker's own, NOTIFY_SOCKET...) comes last."""
    env = {'PATH': CLEAN_PATH, 'HOME': who.home, 'USER': who.user, 'LOGNAME': who.user,
           'SHELL': who.shell}
    env.update(spec.env)
    env.update(extra or ())
    return env


def check_paths(spec):
    """Clear errors for the usual mistakes, before anything is started."""
    if spec.chroot != '/':
        if os.geteuid() != 0:
            raise SpawnError('cannot chroot to %s: the worker is not root' % spec.chroot)
        if not os.path.isdir(spec.chroot):
            raise SpawnError('chroot %s is not an existing directory' % spec.chroot)
    inside = _inside(spec.chroot)
    run = inside(spec.run)
    try:
        mode = os.stat(run).st_mode
    except OSError as err:
        raise SpawnError('cannot run %s: %s' % (run, err.strerror)) from None
    if not stat.S_ISREG(mode) or not mode & 0o111:
        raise SpawnError('cannot run %s: not an executable file' % run)
    check_program(run, inside)
    if not os.path.isdir(inside(spec.cwd_in_chroot)):
        raise SpawnError('cwd %s is not an existing directory' % inside(spec.cwd_in_chroot))


def check_program(run, inside):
    """A program the kernel can run: an ELF file, or a script whose "#!" names an
    interpreter that exists. Checked before the start on every path, so that
    with or without a user switch (setpriv would exec it, and could only exit
    126 or 127) the process is `failed` with the reason, never run by a shell.
    Opened without blocking: a FIFO swapped in, or a lease its owner holds on
    it, would otherwise stop the worker's main thread (exec decides then)."""
    try:
        fd = os.open(run, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return          # not readable by the worker now: exec decides
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return
        head = os.read(fd, 256)
    except OSError:
        return
    finally:
        os.close(fd)
    if head.startswith(b'\x7fELF'):
        return
    if not head.startswith(b'#!'):
        raise SpawnError('cannot run %s: not a program the kernel can run (missing "#!" '
                         'line?)' % run)
    words = head[2:].split(b'\n', 1)[0].split()
    interpreter = os.fsdecode(words[0]) if words else ''
    if not interpreter.startswith('/') or not os.access(inside(interpreter), os.X_OK):
        raise SpawnError('cannot run %s: its interpreter %s is missing (check the "#!" line)'
                         % (run, interpreter or '(none)'))


def _inside(root):
    return (lambda path: path) if root == '/' else (lambda path: root + path)


def start(spec, who, output_fd, confine=None, rlimits=(), extra_env=None):
    """Start the child; raise SpawnError with the reason when it cannot run.
    `rlimits`: (name, soft, hard) triples set before the program runs."""
    argv = [spec.run] + list(spec.args)
    common = dict(stdin=subprocess.DEVNULL, stdout=output_fd, stderr=subprocess.STDOUT,
                  close_fds=True, start_new_session=True, restore_signals=True)
    env = environment(spec, who, extra_env)
    switch = not who.is_current()
    helpers_may_see_env = not any(map(ROOT_UNSAFE_ENV.match, env))
    try:
        if spec.chroot != '/' or (switch and rlimits and not helpers_may_see_env):
            return _start_launched(spec, who, argv, common, confine, rlimits, env)
        if switch:
            if SETPRIV is None or not helpers_may_see_env:
                common.update(user=who.uid, group=who.gid, extra_groups=list(who.groups))
            else:
                check_executable_by(spec.run, who)
                argv = switch_user_argv(who, argv)
        if rlimits:         # as root before a switch by setpriv; else as the process
            argv = limit_argv(rlimits, argv)
        return subprocess.Popen(argv, executable=argv[0], cwd=spec.cwd_in_chroot,
                                env=env, umask=spec.umask, **common)
    except OSError as err:
        raise SpawnError(describe_exec_error(spec.run, err)) from None
    except (ValueError, subprocess.SubprocessError) as err:
        raise SpawnError('cannot run %s: %s' % (spec.run, err)) from None


def switch_user_argv(who, argv):
    """setpriv's command line: become `who` (real, effective and saved ids, exactly
    its groups), then exec `argv` (whose argv[0] is the program's absolute path)."""
    return [SETPRIV, '--reuid=%d' % who.uid, '--regid=%d' % who.gid,
            '--groups=' + ','.join(map(str, who.groups)), '--'] + argv


def limit_argv(rlimits, argv):
    """util-linux prlimit's command line: set the limits (as the worker, before any
    user switch), then exec `argv`, in the same pid."""
    if PRLIMIT is None:
        raise SpawnError('cannot set limits (%s): util-linux\'s prlimit is missing'
                         % ', '.join(name for name, _, _ in rlimits))
    return [PRLIMIT] + ['--%s=%s:%s' % (name, _text(soft), _text(hard))
                        for name, soft, hard in rlimits] + ['--'] + argv


def _text(limit):
    return 'unlimited' if limit == resource.RLIM_INFINITY else str(limit)


class DescriptorLimit:
    """The worker's own RLIMIT_NOFILE. Each child with `logs` costs the worker
    a few descriptors, so past three quarters of its soft limit the worker
    raises it to the hard one; children keep the limit the worker was given
    (SPEC 5.2), through prlimit, only once that happened."""

    def __init__(self):
        self.original = resource.getrlimit(resource.RLIMIT_NOFILE)
        self.raised = False

    def make_room(self, newest_fd):
        soft, hard = self.original
        if self.raised or newest_fd < soft * 3 // 4 or soft >= hard:
            return
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            self.raised = True
        except (ValueError, OSError):
            pass

    def for_children(self):
        """The rlimits a child needs to get the worker's original nofile back."""
        return (('nofile',) + tuple(self.original),) if self.raised else ()


def check_executable_by(path, who):
    """A clear error before start, as an exec failure would have given: setpriv
    could only exit 126 with its complaint in the process's log. Mode bits only
    (an ACL may still refuse, and is then reported by setpriv)."""
    st = os.stat(path)
    if st.st_uid == who.uid:
        allowed = st.st_mode & stat.S_IXUSR
    elif st.st_gid in who.groups:       # the primary group is among them
        allowed = st.st_mode & stat.S_IXGRP
    else:
        allowed = st.st_mode & stat.S_IXOTH
    if not allowed:
        raise SpawnError('cannot run %s: not executable by user "%s"' % (path, who.user))


def _start_launched(spec, who, argv, common, confine, rlimits, env):
    """The launcher reads its job from a memfd: no secrets in any argv, and no
    variable of the process's environment in its own."""
    job = json.dumps({'chroot': spec.chroot, 'confine': confine, 'rlimits': rlimits,
                      'cwd': spec.cwd_in_chroot,
                      'uid': who.uid, 'gid': who.gid, 'groups': list(who.groups),
                      'umask': spec.umask, 'run': spec.run, 'argv': argv, 'env': env})
    fd = os.memfd_create('dpd-job', os.MFD_CLOEXEC)
    try:
        os.write(fd, job.encode())
        os.lseek(fd, 0, os.SEEK_SET)
        return subprocess.Popen([sys.executable, '-I', '-S', LAUNCHER, str(fd)],
                                env={}, pass_fds=(fd,), cwd='/', **common)
    finally:
        os.close(fd)


def describe_exec_error(run, err):
    if err.errno == errno.ENOEXEC:
        return 'cannot run %s: not a program the kernel can run (missing "#!" line?)' % run
    if err.errno == errno.ENOENT and os.path.exists(run):
        return 'cannot run %s: its interpreter is missing (check the "#!" line)' % run
    if err.errno in (errno.EMFILE, errno.ENFILE, errno.EAGAIN, errno.ENOMEM):
        return 'cannot start %s now: %s (out of resources)' % (run, err.strerror)
    return 'cannot run %s: %s' % (run, err.strerror or err)
