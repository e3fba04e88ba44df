#!/usr/bin/env python3
"""One test child, many behaviours: `actor.py MODE [ARGS...]`.

Modes:
  sleep                   block forever (until a signal)
  dump PATH               write what it sees of itself as JSON to PATH, then sleep
  chatty COUNT [SLEEP]    write COUNT numbered lines fast (0 = forever; SLEEP
                          seconds between lines), then sleep
  ignore-term [READY]     ignore SIGTERM, write READY (when given), then sleep
  grandchild PIDFILE      start a grandchild in its own group, write its pid, sleep
  daemonize PIDFILE [D]   double fork; after D seconds the daemon writes PIDFILE
  exit CODE               exit at once with CODE
  echo TEXT...            print TEXT and sleep
Arguments that start with --marker= are ignored: tests use them to find
their processes in /proc.
"""
import json
import os
import signal
import sys
import time


def sleep_forever():
    while True:
        signal.pause()


def status_fields():
    fields = {}
    with open('/proc/self/status') as f:
        for line in f:
            key, _, value = line.partition(':')
            fields[key] = value.strip()
    return fields


def exec_environment():
    """The environment as exec'd (Python may add LC_CTYPE to os.environ itself)."""
    with open('/proc/self/environ', 'rb') as f:
        pairs = [item.partition(b'=') for item in f.read().split(b'\0') if item]
    return {k.decode(): v.decode() for k, _, v in pairs}


def dump(path):
    status = status_fields()
    umask = os.umask(0)
    os.umask(umask)
    info = {
        'pid': os.getpid(), 'uid': os.getuid(), 'gid': os.getgid(),
        'groups': sorted(os.getgroups()), 'env': exec_environment(), 'cwd': os.getcwd(),
        'fds': sorted(int(fd) for fd in os.listdir('/proc/self/fd')),
        'umask': umask, 'sigblk': status['SigBlk'], 'sigign': status['SigIgn'],
        'status_uid': status['Uid'], 'status_gid': status['Gid'],
        'status_groups': status['Groups'], 'sid': os.getsid(0), 'pgid': os.getpgid(0),
        'stdin': os.readlink('/proc/self/fd/0'), 'root_listing': sorted(os.listdir('/')),
    }
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(info, f)
    os.rename(tmp, path)
    sleep_forever()


def chatty(count, pause=0.0):
    out = sys.stdout
    i = 0
    while count == 0 or i < count:
        out.write('%08d\n' % i)
        if pause:
            out.flush()
            time.sleep(pause)
        i += 1
    out.flush()
    sleep_forever()


def grandchild(pidfile):
    pid = os.fork()
    if pid == 0:
        sleep_forever()
    with open(pidfile, 'w') as f:
        f.write('%d\n' % pid)
    sleep_forever()


def daemonize(pidfile, delay=0.0):
    if os.fork():
        os._exit(0)
    os.setsid()
    if os.fork():
        os._exit(0)
    time.sleep(delay)
    tmp = pidfile + '.tmp'
    with open(tmp, 'w') as f:
        f.write('%d\n' % os.getpid())
    os.rename(tmp, pidfile)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    sleep_forever()


def main():
    args = [a for a in sys.argv[1:] if not a.startswith('--marker=')]
    mode, rest = args[0], args[1:]
    if mode == 'sleep':
        sleep_forever()
    elif mode == 'dump':
        dump(rest[0])
    elif mode == 'chatty':
        chatty(int(rest[0]), float(rest[1]) if len(rest) > 1 else 0.0)
    elif mode == 'ignore-term':
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if rest:
            open(rest[0], 'w').close()
        sleep_forever()
    elif mode == 'grandchild':
        grandchild(rest[0])
    elif mode == 'daemonize':
        daemonize(rest[0], float(rest[1]) if len(rest) > 1 else 0.0)
    elif mode == 'exit':
        sys.exit(int(rest[0]))
    elif mode == 'echo':
        print(' '.join(rest), flush=True)
        sleep_forever()
    else:
        sys.exit('unknown mode %r' % mode)


if __name__ == '__main__':
    main()
