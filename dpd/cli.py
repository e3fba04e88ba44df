"""Command lines of the three daemons: `dpd-xxx [-f] [-v] [-t] CONFIG`.

`run_daemon` is the start-up order every daemon shares: check the config,
take the lock, detach, log, serve; each daemon supplies `load`, `check` and
`serve` (see `worker/main.py`, `cluster/masterd.py`, `cluster/clientd.py`).
"""
import argparse
import logging
import os
import sys

from . import __version__, nodepolicy
from .config import ConfigError, lock_path
from .daemon import LockRefused, Readiness, detach, sd_notify, take_lock, write_pid
from .logsetup import DaemonLog
from .printable import printable
from .safefile import UnsafePath, check_owned_paths, remove_pid_file

EX_OK, EX_FAILURE, EX_USAGE, EX_CONFIG = 0, 1, 2, 78
log = logging.getLogger('dpd')


def parser(program, description, takes_policy=False):
    ap = argparse.ArgumentParser(
        prog=program, description=description,
        epilog='Exit status: 0 stopped normally (or already running); 1 runtime failure; '
               '2 usage error; 78 invalid configuration. Signals: TERM/INT stop, HUP reloads, '
               'USR1 reopens log files.')
    ap.add_argument('-f', '--foreground', action='store_true',
                    help='stay attached; log to stderr (and to log_file too, when set)')
    ap.add_argument('-v', '--verbose', action='store_true', help='debug-level logging')
    ap.add_argument('-t', '--check', action='store_true',
                    help='validate CONFIG, print every problem, exit 0 if valid, 78 if not')
    ap.add_argument('--version', action='version', version='%s (diprocd) %s'
                    % (program, __version__))
    if takes_policy:
        ap.add_argument('--policy', metavar='FILE', help='the node policy: what root may do for '
                        'a file that root does not own or a client manages (default %s; '
                        'absent: the defaults)' % nodepolicy.DEFAULT_FILE)
    ap.add_argument('config', metavar='CONFIG', help='the JSON configuration file')
    return ap


def run_daemon(daemon, argv=None):
    args = parser(daemon.program, daemon.description,
                  getattr(daemon, 'takes_policy', False)).parse_args(argv)
    path = os.path.abspath(args.config)
    if getattr(daemon, 'takes_policy', False):
        # read again on HUP, after the daemon moved to "/": the path as given now
        daemon.node_policy = nodepolicy.PolicyInForce(args.policy and
                                                      os.path.abspath(args.policy))
    if args.check:
        return _check(daemon, path)
    try:
        config = daemon.load(path)
    except ConfigError as err:
        _print_errors(daemon.program, err.messages)
        return EX_CONFIG
    try:
        lock_fd = take_lock(lock_path(config), daemon.program)
        if lock_fd is None:
            if args.verbose:
                _say(daemon.program, 'already running for %s' % path)
            return EX_OK
        check_owned_paths(daemon.own_paths(config))
    except (LockRefused, UnsafePath) as err:
        _say(daemon.program, str(err))
        return EX_FAILURE
    except OSError as err:
        _say(daemon.program, 'cannot take the lock %s: %s' % (lock_path(config),
                                                              err.strerror or err))
        return EX_FAILURE
    readiness = Readiness(None) if args.foreground else detach()
    write_pid(lock_fd)
    return _serve(daemon, config, args, readiness)


def _serve(daemon, config, args, readiness):
    daemon_log = DaemonLog(daemon.program, args.verbose)
    if args.foreground:
        daemon_log.to_stderr()
    unheard = ''
    try:
        if config.log_file:
            daemon_log.to_file(config.log_file)
        elif not args.foreground and not daemon_log.to_syslog():
            unheard = ('%s: warning: no log_file and no syslog (/dev/log): what this daemon '
                       'logs, a fatal error included, goes nowhere; set log_file in %s'
                       % (daemon.program, printable(config.path)))
    except OSError as err:
        readiness.failed(EX_FAILURE, '%s: cannot open log file %s: %s'
                         % (daemon.program, config.log_file, err))
        return EX_FAILURE

    def ready():
        readiness.ready(unheard)
        sd_notify('READY=1')
        log.info('ready (pid %d, %s)', os.getpid(), config.path)

    try:
        code = daemon.serve(config, daemon_log, ready)
    except Exception as err:
        log.exception('fatal error')
        readiness.failed(EX_FAILURE, '%s: %s' % (daemon.program, err))
        code = EX_FAILURE
    if config.pid_file:
        remove_pid_file(config.pid_file, os.getpid())
    log.info('exiting with status %d', code)
    return code


def _check(daemon, path):
    try:
        warnings = daemon.check(path)
    except ConfigError as err:
        _print_errors(daemon.program, err.messages)
        _say(daemon.program, 'configuration file %s test failed' % path)
        return EX_CONFIG
    for warning in warnings:
        _say(daemon.program, 'warning: %s' % warning)
    _say(daemon.program, 'configuration file %s test is successful' % path, sys.stdout)
    return EX_OK


def _print_errors(program, messages):
    for message in messages:
        _say(program, message)


def _say(program, text, out=None):
    """A line for the operator's terminal: what a file or a peer wrote (a path, a
    name) is quoted with its control characters escaped, never raw."""
    (out or sys.stderr).write('%s: %s\n' % (program, printable(text)))


def main_for(daemon_class):
    def main(argv=None):
        sys.exit(run_daemon(daemon_class(), argv))
    return main
