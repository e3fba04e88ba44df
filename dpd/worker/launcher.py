"""Launcher for chrooted processes, and for a user switch with limits whose
environment setpriv and prlimit must not see: `python3 -I -S launcher.py FD`.

Runs as root in its own single-threaded interpreter, so the steps `Popen`
cannot do safely in a threaded worker happen here: chroot, chdir inside the
new root, drop to the target groups, gid and uid (in that order), umask,
then exec the program; resource limits are set first, as root. Its job
(paths, ids, argv, environment) comes as JSON on file descriptor FD, so no
secret ever shows in a command line, and the program's environment is only
the program's. It imports nothing of diprocd: it must work from any
interpreter, in isolated mode.
"""
import json
import os
import resource
import signal
import sys


def main():
    fd = int(sys.argv[1])
    with os.fdopen(fd, 'rb') as job_file:
        job = json.loads(job_file.read())
    # Python ignores SIGPIPE and SIGXFSZ; an exec'd program must get the defaults
    for signum in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT):
        signal.signal(signum, signal.SIG_DFL)
    try:
        for name, soft, hard in job.get('rlimits') or ():
            resource.setrlimit(getattr(resource, 'RLIMIT_' + name.upper()), (soft, hard))
        if job['chroot'] != '/':
            enter_root(job['chroot'], job.get('confine'))
        os.chdir(job['cwd'])
        os.setgroups(job['groups'])
        os.setgid(job['gid'])
        os.setuid(job['uid'])
        os.umask(job['umask'])
        os.execve(job['run'], job['argv'], job['env'])
    except OSError as err:
        where = '' if job['chroot'] == '/' else ' in chroot %s' % job['chroot']
        os.write(2, ('dpd-workerd: cannot start %s%s: %s\n'
                     % (job['run'], where, err)).encode())
        os._exit(127)


def enter_root(path, confine):
    """chroot to `path`. Under the node policy, by the directory it resolves to
    now, which must lie below one of `confine` (a link planted since the file
    was checked leads nowhere else)."""
    if confine is None:
        os.chroot(path)
        return
    fd = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    reached = os.readlink('/proc/self/fd/%d' % fd)
    if not any(reached == d or reached.startswith(d.rstrip('/') + '/') for d in confine):
        raise PermissionError(1, 'it leads to %s, outside the node policy\'s allowed_paths'
                              % reached)
    os.fchdir(fd)
    os.chroot('.')


if __name__ == '__main__':
    main()
