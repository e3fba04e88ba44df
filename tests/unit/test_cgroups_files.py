"""dpd/worker/cgroups.py (and trees.py) against a fake cgroupfs in tmp_path.

A fake hierarchy is a plain directory: `mkdir` makes a cgroup, control files
are regular files the test creates (the kernel makes them in a real one: the
code only opens them for writing, never creates them), and a "populated"
cgroup is one with a file the test left in it (rmdir fails, as on a cgroup
with members). Layouts: hybrid (v1 memory/cpu/pids, membership in the v2
`unified` hierarchy, our v1 memory cgroup nested below /process_api/ID as on
these test machines) and pure v2, in the root cgroup or delegated by systemd.
"""
import errno
import os
import signal
import subprocess
import threading

import pytest

from dpd.limitspec import Limits
from dpd.worker import cgroupfs as fs
from dpd.worker import cgroups as cg
from dpd.worker.config import parse_worker
from dpd.worker.trees import NoTree, Trees

IS_ROOT = os.geteuid() == 0
CONTROLLERS = ('memory', 'cpu', 'pids')
HYBRID_MOUNTINFO = '''\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
'''
HYBRID_OWN = '''\
9:name=systemd:/
8:pids:/
4:memory:/process_api/c4c2
2:cpuacct:/
1:cpu:/
0::/
'''
COMBINED_MOUNTINFO = '''\
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw,nsdelegate
'''
COMBINED_OWN = '3:cpu,cpuacct:/user.slice\n4:memory:/user.slice\n0::/user.slice/s.scope\n'
V2_MOUNTINFO = '30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n'


def web_limits(**cgroup):
    return Limits(rlimits=(('nofile', 100),), **cgroup)


def touch(path, text=''):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        f.write(text)


def read(path):
    with open(path) as f:
        return f.read()


def hybrid(tmp_path, own_memory='/process_api/c4c2', controllers=CONTROLLERS):
    """A fake hybrid host's Cgroups, started (its instance directories made)."""
    v1 = {c: cg.Hierarchy(str(tmp_path / c), own_memory if c == 'memory' else '/', 1, (c,))
          for c in controllers}
    groups = cg.Cgroups(cg.Hierarchy(str(tmp_path / 'unified'), '/', 2, ['hugetlb']), v1,
                        'etc-w.json')
    groups.start()
    return groups


def pure_v2(tmp_path, own='/', controllers=CONTROLLERS):
    """A fake pure v2 host's Cgroups; the delegation files made first, then started."""
    mount = str(tmp_path / 'v2')
    base = ('/diprocd' if own == '/' else own) + '/etc-w.json'
    parts, path = base.split('/')[1:], ''
    touch(mount + own.rstrip('/') + '/cgroup.subtree_control')
    for part in parts:
        path += '/' + part
        if path.startswith(own.rstrip('/') + '/') or own == '/':
            touch(mount + path + '/cgroup.subtree_control')
    if own != '/':
        touch(mount + own + '/supervisor/cgroup.procs')
    groups = cg.Cgroups(cg.Hierarchy(mount, own, 2, controllers), {}, 'etc-w.json')
    groups.start()
    return groups


def made(groups, tree, files=()):
    """prepare() the tree, then give each of its cgroups the control files `files`."""
    groups.prepare(tree)
    for hierarchy, relative in tree.dirs:
        for name in files:
            touch(hierarchy.path(relative) + '/' + name)


# ---------------------------------------------------------------- finding the hierarchies

def test_mounts_and_own_paths_of_a_hybrid_host(tmp_path):
    (tmp_path / 'mountinfo').write_text(HYBRID_MOUNTINFO)
    (tmp_path / 'cgroup').write_text(HYBRID_OWN)
    assert fs.mounts(str(tmp_path / 'mountinfo')) == {
        'cgroup2': '/sys/fs/cgroup/unified', 'cpu': '/sys/fs/cgroup/cpu',
        'memory': '/sys/fs/cgroup/memory', 'pids': '/sys/fs/cgroup/pids'}
    assert fs.own_paths(str(tmp_path / 'cgroup')) == {
        '': '/', 'pids': '/', 'memory': '/process_api/c4c2', 'cpu': '/'}
    (tmp_path / 'mountinfo').write_text(COMBINED_MOUNTINFO)
    (tmp_path / 'cgroup').write_text(COMBINED_OWN)
    assert fs.mounts(str(tmp_path / 'mountinfo'))['cpu'] == '/sys/fs/cgroup/cpu,cpuacct'
    assert fs.own_paths(str(tmp_path / 'cgroup')) == {
        'cpu': '/user.slice', 'memory': '/user.slice', '': '/user.slice/s.scope'}
    (tmp_path / 'mountinfo').write_text(V2_MOUNTINFO)
    assert fs.mounts(str(tmp_path / 'mountinfo')) == {'cgroup2': '/sys/fs/cgroup'}
    assert fs.mounts(str(tmp_path / 'absent')) == {}
    assert fs.own_paths(str(tmp_path / 'absent')) == {}


@pytest.mark.skipif(not IS_ROOT, reason='detect() gives a worker that is not root no cgroups')
def test_detect_on_fake_hosts(tmp_path):
    mountinfo, own = tmp_path / 'mountinfo', tmp_path / 'cgroup'
    unified = tmp_path / 'unified'
    touch(str(unified / 'cgroup.controllers'), 'hugetlb\n')
    mountinfo.write_text('41 31 0:38 / %s rw - cgroup2 cgroup2 rw\n' % unified
                         + '35 31 0:32 / /m rw - cgroup cgroup rw,memory\n'
                         + '39 31 0:36 / /p rw - cgroup cgroup rw,pids\n')
    own.write_text('8:pids:/\n4:memory:/process_api/x\n0::/\n')
    config = tmp_path / 'etc' / 'my worker.json'
    found = cg.Cgroups.detect(str(config), str(mountinfo), str(own))
    assert found.membership.mount == str(unified) and found.membership.own == '/'
    assert sorted(found.v1) == ['memory', 'pids'], 'no cpu hierarchy: cpu limits are missing'
    assert found.v1['memory'].own == '/process_api/x'
    assert found.instance == fs.escape(str(config))
    assert found.missing(web_limits(cpu_max=1.0, memory_max=1)) == ['cpu_max']
    # v2 offers memory: v2 serves it, the v1 hierarchy is not used
    touch(str(unified / 'cgroup.controllers'), 'memory pids\n')
    found = cg.Cgroups.detect(str(config), str(mountinfo), str(own))
    assert found.v1 == {} and found.missing(web_limits(memory_max=1, pids_max=2)) == []
    # no v2 hierarchy, or this process not in it: no cgroups at all
    mountinfo.write_text('35 31 0:32 / /m rw - cgroup cgroup rw,memory\n')
    assert cg.Cgroups.detect(str(config), str(mountinfo), str(own)) is None
    mountinfo.write_text('41 31 0:38 / %s rw - cgroup2 cgroup2 rw\n' % unified)
    own.write_text('4:memory:/\n')
    assert cg.Cgroups.detect(str(config), str(mountinfo), str(own)) is None


@pytest.mark.parametrize('path, name', [
    ('/var/lib/diprocd/diprocd-worker.json', 'var-lib-diprocd-diprocd-worker.json'),
    ('/etc/a b/w.json', 'etc-a\\x20b-w.json'),
    ('/etc/x\ny.json', 'etc-x\\x0ay.json'),
    ('/srv/web@1:2+3/w.json', 'srv-web@1:2+3-w.json'),
    ('/', 'root')])
def test_a_config_path_becomes_one_cgroup_name(path, name):
    assert fs.escape(path) == name and '/' not in name


# ---------------------------------------------------------------- where trees live, limits

def test_hybrid_tree_membership_first_then_only_the_v1_controllers_its_limits_need(tmp_path):
    groups = hybrid(tmp_path)
    assert os.path.isdir(tmp_path / 'unified/diprocd/etc-w.json')
    assert os.path.isdir(tmp_path / 'memory/process_api/c4c2/etc-w.json'), 'below our own'
    assert os.path.isdir(tmp_path / 'pids/diprocd/etc-w.json')
    plain = groups.tree('plain')
    assert [(h.mount, rel) for h, rel in plain.dirs] == [
        (str(tmp_path / 'unified'), '/diprocd/etc-w.json/plain.proc')]
    assert plain.relative == '/diprocd/etc-w.json/plain.proc'
    web = groups.tree('web', web_limits(memory_max=64 << 20, pids_max=10))
    assert [(os.path.basename(h.mount), rel) for h, rel in web.dirs] == [
        ('unified', '/diprocd/etc-w.json/web.proc'),
        ('memory', '/process_api/c4c2/etc-w.json/web.proc'),
        ('pids', '/diprocd/etc-w.json/web.proc')]
    rlimits_only = groups.tree('r', web_limits())
    assert len(rlimits_only.dirs) == 1


def test_hybrid_limits_go_to_the_v1_files(tmp_path):
    groups = hybrid(tmp_path)
    limits = web_limits(memory_max=64 << 20, memory_high=16 << 20, cpu_max=0.5, cpu_weight=200,
                        pids_max=50)
    tree = groups.tree('web', limits)
    made(groups, tree, ('memory.limit_in_bytes', 'memory.soft_limit_in_bytes',
                        'cpu.cfs_period_us', 'cpu.cfs_quota_us', 'cpu.shares', 'pids.max'))
    groups.apply(tree, limits)
    files = {(os.path.basename(h.mount), name): read(os.path.join(h.path(rel), name))
             for h, rel in tree.dirs for name in os.listdir(h.path(rel))}
    written = {key: text for key, text in files.items() if text}
    assert written == {('memory', 'memory.limit_in_bytes'): str(64 << 20),
                       ('memory', 'memory.soft_limit_in_bytes'): str(16 << 20),
                       ('cpu', 'cpu.cfs_period_us'): '100000',
                       ('cpu', 'cpu.cfs_quota_us'): '50000',
                       ('cpu', 'cpu.shares'): '2048', ('pids', 'pids.max'): '50'}


@pytest.mark.parametrize('own', ['/', '/system.slice/dpd-workerd.service'])
def test_pure_v2_delegates_the_controllers_and_writes_v2_files(tmp_path, own):
    groups = pure_v2(tmp_path, own)
    mount = str(tmp_path / 'v2')
    base = ('/diprocd' if own == '/' else own) + '/etc-w.json'
    # every cgroup from the worker's own down to the instance hands the controllers on
    assert read(mount + base + '/cgroup.subtree_control') == '+memory +cpu +pids'
    assert read(mount + own.rstrip('/') + '/cgroup.subtree_control') == '+memory +cpu +pids'
    if own != '/':
        # a v2 cgroup that hands controllers down holds no process: the worker moved out
        assert read(mount + own + '/supervisor/cgroup.procs') == str(os.getpid())
        assert groups.home[groups.membership] == own + '/supervisor'
    limits = web_limits(memory_max=1 << 30, memory_high=512 << 20, cpu_max=2.5,
                        cpu_weight=50, pids_max=7)
    tree = groups.tree('web', limits)
    assert [rel for _, rel in tree.dirs] == [base + '/web.proc'], 'one hierarchy for all'
    made(groups, tree, ('memory.max', 'memory.high', 'cpu.max', 'cpu.weight', 'pids.max'))
    groups.apply(tree, limits)
    directory = mount + base + '/web.proc/'
    assert {name: read(directory + name) for name in os.listdir(directory)} == {
        'memory.max': str(1 << 30), 'memory.high': str(512 << 20),
        'cpu.max': '250000 100000', 'cpu.weight': '50', 'pids.max': '7'}


def test_a_tiny_cpu_max_gets_the_kernels_smallest_quota(tmp_path):
    assert fs.limit_files(2, 'cpu_max', 0.001) == [('cpu.max', '1000 100000')]
    assert fs.limit_files(1, 'cpu_max', 0.001) == [('cpu.cfs_period_us', '100000'),
                                              ('cpu.cfs_quota_us', '1000')]
    assert fs.limit_files(1, 'cpu_weight', 1) == [('cpu.shares', '10')]
    assert fs.limit_files(1, 'cpu_weight', 10000) == [('cpu.shares', '102400')]
    assert fs.limit_files(1, 'cpu_weight', 100) == [('cpu.shares', '1024')]


def test_limits_a_host_cannot_enforce_are_named(tmp_path):
    limits = web_limits(memory_max=512 << 20, memory_high=1, cpu_max=0.5, pids_max=10)
    no_pids = hybrid(tmp_path / 'a', controllers=('memory', 'cpu'))
    assert no_pids.missing(limits) == ['pids_max']
    assert no_pids.missing(web_limits()) == [] and no_pids.missing(None) == []
    v2_without_memory = pure_v2(tmp_path / 'b', controllers=('cpu', 'pids'))
    assert v2_without_memory.missing(limits) == ['memory_max', 'memory_high']
    assert cg.describe_missing(['memory_max', 'pids_max'], limits) == \
        'memory_max 512M, pids_max 10'


def test_a_limit_file_that_cannot_be_written_is_an_error(tmp_path):
    groups = hybrid(tmp_path)
    limits = web_limits(pids_max=5)
    tree = groups.tree('web', limits)
    groups.prepare(tree)                      # no pids.max: the controller refuses
    with pytest.raises(OSError):
        groups.apply(tree, limits)


# ---------------------------------------------------------------- a start, a stop, a removal

def test_prepare_makes_fresh_cgroups_and_refuses_a_populated_one(tmp_path):
    groups = hybrid(tmp_path)
    before = groups.tree('web', web_limits(memory_max=1 << 20))
    made(groups, before)
    after = groups.tree('web', web_limits(pids_max=3))
    groups.prepare(after)
    assert not os.path.exists(tmp_path / 'memory/process_api/c4c2/etc-w.json/web.proc'), \
        'no limit of the earlier definition is left'
    assert os.path.isdir(tmp_path / 'pids/diprocd/etc-w.json/web.proc')
    touch(str(tmp_path / 'unified/diprocd/etc-w.json/web.proc/member'))   # "populated"
    with pytest.raises(cg.CgroupError) as caught:
        groups.prepare(after)
    assert caught.value.errno == errno.EBUSY and 'still has processes' in str(caught.value)


def test_joined_puts_the_worker_in_the_tree_for_the_fork_then_back(tmp_path):
    groups = hybrid(tmp_path)
    tree = groups.tree('web', web_limits(memory_max=1 << 20))
    made(groups, tree, ('cgroup.procs', 'tasks'))
    touch(str(tmp_path / 'unified/cgroup.procs'))
    touch(str(tmp_path / 'memory/process_api/c4c2/tasks'))
    unified_dir, memory_dir = (h.path(rel) for h, rel in tree.dirs)
    with groups.joined(tree):
        assert read(unified_dir + '/cgroup.procs') == str(os.getpid()), 'v2: the process'
        assert read(memory_dir + '/tasks') == str(threading.get_native_id()), 'v1: the thread'
    assert read(str(tmp_path / 'unified/cgroup.procs')) == str(os.getpid())
    assert read(str(tmp_path / 'memory/process_api/c4c2/tasks')) == \
        str(threading.get_native_id())


def test_joined_goes_back_from_the_hierarchies_it_entered_when_one_fails(tmp_path):
    groups = hybrid(tmp_path)
    tree = groups.tree('web', web_limits(memory_max=1 << 20))
    made(groups, tree, ('cgroup.procs',))    # the v1 cgroup has no `tasks`: entering fails
    touch(str(tmp_path / 'unified/cgroup.procs'), 'x' * 20)
    with pytest.raises(OSError):
        with groups.joined(tree):
            pytest.fail('never reached')
    assert read(str(tmp_path / 'unified/cgroup.procs')).startswith(str(os.getpid()))


def test_members_populated_and_the_events_file(tmp_path):
    groups = hybrid(tmp_path)
    tree = groups.tree('web')
    assert groups.members(tree) == [] and groups.populated(tree) is False
    made(groups, tree)
    directory = tree.dirs[0][0].path(tree.relative)
    touch(directory + '/cgroup.procs', '12\n345\n')
    touch(directory + '/cgroup.events', 'populated 1\nfrozen 0\n')
    assert groups.members(tree) == [12, 345] and groups.populated(tree) is True
    touch(directory + '/cgroup.events', 'populated 0\nfrozen 0\n')
    assert groups.populated(tree) is False
    assert groups.events_file(tree) == directory + '/cgroup.events'


def test_kill_goes_through_cgroup_kill_other_signals_to_each_member(tmp_path):
    groups = hybrid(tmp_path)
    tree = groups.tree('web')
    made(groups, tree)
    directory = tree.dirs[0][0].path(tree.relative)
    children = [subprocess.Popen(['sleep', '60']) for _ in range(2)]
    try:
        touch(directory + '/cgroup.procs', ''.join('%d\n' % c.pid for c in children))
        touch(directory + '/cgroup.kill')
        groups.signal(tree, signal.SIGKILL)
        assert read(directory + '/cgroup.kill') == '1'
        assert all(c.poll() is None for c in children), 'the kernel kills, not the worker'
        groups.signal(tree, signal.SIGTERM)
        assert [c.wait(5) for c in children] == [-signal.SIGTERM] * 2
    finally:
        for child in children:
            child.kill()
            child.wait()
    # a kernel without cgroup.kill: KILL to each member; one gone meanwhile is no error
    os.remove(directory + '/cgroup.kill')
    child = subprocess.Popen(['sleep', '60'])
    gone = subprocess.Popen(['true'])
    gone.wait()
    try:
        touch(directory + '/cgroup.procs', '%d\n' % child.pid)
        groups.signal(tree, signal.SIGKILL)
        assert child.wait(5) == -signal.SIGKILL
    finally:
        child.kill()
        child.wait()


def test_remove_takes_the_name_out_of_every_hierarchy_and_leaves_a_populated_one(tmp_path):
    groups = hybrid(tmp_path)
    made(groups, groups.tree('web', web_limits(memory_max=1, pids_max=2, cpu_max=1.0)))
    groups.remove(groups.tree('web'))        # today's definition has no limits
    for hierarchy in ('unified/diprocd', 'memory/process_api/c4c2', 'cpu/diprocd',
                      'pids/diprocd'):
        assert not os.path.exists(tmp_path / hierarchy / 'etc-w.json/web.proc'), hierarchy
    made(groups, groups.tree('busy'))
    touch(str(tmp_path / 'unified/diprocd/etc-w.json/busy.proc/member'))
    groups.remove(groups.tree('busy'))      # rmdir refused: left, silently
    assert os.path.isdir(tmp_path / 'unified/diprocd/etc-w.json/busy.proc')


def test_close_removes_the_instance_but_never_a_cgroup_it_did_not_make(tmp_path):
    groups = hybrid(tmp_path)
    made(groups, groups.tree('a', web_limits(memory_max=1)))
    made(groups, groups.tree('b'))
    touch(str(tmp_path / 'unified/diprocd/other-w.json/x.proc/member'))   # another worker's
    groups.close()
    assert not os.path.exists(tmp_path / 'unified/diprocd/etc-w.json')
    assert os.path.isdir(tmp_path / 'unified/diprocd/other-w.json/x.proc'), 'not ours'
    assert not os.path.exists(tmp_path / 'memory/process_api/c4c2/etc-w.json')
    assert os.path.isdir(tmp_path / 'memory/process_api/c4c2'), 'the worker\'s own stays'
    assert not os.path.exists(tmp_path / 'pids/diprocd'), 'empty: gone with the instance'
    # a member left behind keeps its cgroup and the instance's; nothing else fails
    again = hybrid(tmp_path)
    made(again, again.tree('stuck'))
    touch(str(tmp_path / 'unified/diprocd/etc-w.json/stuck.proc/member'))
    again.close()
    assert os.path.isdir(tmp_path / 'unified/diprocd/etc-w.json/stuck.proc')


# ---------------------------------------------------------------- usage, OOM, adoption

def test_usage_and_oom_kills_from_v1_files(tmp_path):
    groups = hybrid(tmp_path)
    tree = groups.tree('web', web_limits(memory_max=1 << 30))
    made(groups, tree)
    unified, memory = (h.path(rel) for h, rel in tree.dirs)
    assert groups.usage(tree) == (None, None) and groups.oom_kills(tree) is None
    touch(memory + '/memory.usage_in_bytes', '37748736\n')
    touch(unified + '/cpu.stat', 'usage_usec 62500000\nuser_usec 1\nsystem_usec 2\n')
    touch(memory + '/memory.oom_control', 'oom_kill_disable 0\nunder_oom 0\noom_kill 3\n')
    assert groups.usage(tree) == (37748736, 62.5)
    assert groups.oom_kills(tree) == 3


def test_usage_and_oom_kills_from_v2_files(tmp_path):
    groups = pure_v2(tmp_path)
    tree = groups.tree('web', web_limits(memory_max=1 << 30))
    made(groups, tree)
    directory = tree.dirs[0][0].path(tree.relative)
    touch(directory + '/memory.current', '4096\n')
    touch(directory + '/cpu.stat', 'usage_usec 1500\n')
    touch(directory + '/memory.events', 'low 0\nhigh 4\nmax 9\noom 2\noom_kill 2\n')
    assert groups.usage(tree) == (4096, 0.0015)
    assert groups.oom_kills(tree) == 2


def test_without_a_memory_cgroup_memory_is_the_members_rss(tmp_path):
    groups = hybrid(tmp_path)
    tree = groups.tree('plain')
    made(groups, tree)
    directory = tree.dirs[0][0].path(tree.relative)
    touch(directory + '/cgroup.procs', '%d\n' % os.getpid())
    memory, _ = groups.usage(tree)
    assert memory == fs.rss(os.getpid()) and memory > 0
    assert groups.oom_kills(tree) is None, 'no memory limit: no OOM count'


def test_contains_reads_the_pids_membership(tmp_path):
    groups = hybrid(tmp_path)
    own = fs.own_paths('/proc/self/cgroup').get('')
    if own is None:
        pytest.skip('this test process is in no cgroup v2 hierarchy')
    mine = cg.Tree('me', [(groups.membership, own)])
    assert groups.contains(mine, os.getpid())
    assert not groups.contains(groups.tree('web'), os.getpid())


# ---------------------------------------------------------------- trees.py: never unlimited

def spec(limits):
    doc = {'procs': [{'name': 'web', 'run': '/bin/true', 'limits': limits}]}
    return parse_worker(doc, '/etc/w.json', 'nobody').procs[0]


def test_without_cgroups_only_rlimits_may_run():
    trees = Trees(None)
    trees.check(spec({'nofile': 10}))
    with pytest.raises(NoTree) as caught:
        trees.check(spec({'memory_max': '64M', 'nofile': 10, 'cpu_weight': 5}))
    assert str(caught.value) == ('cannot enforce cpu_weight 5, memory_max 64M: the worker has no '
                                 'cgroups (it must be root, on a host with a writable cgroup v2 '
                                 'hierarchy)')
    assert trees.signal('web', signal.SIGKILL) is False and trees.populated('web') is False
    assert trees.events_file('web') is None and trees.record('web') is None
    assert trees.adopt('web', None, 1, None) is True
    assert trees.adopt('web', '/diprocd/etc-w.json/web.proc', 1, None) is False


def test_a_missing_controller_is_named(tmp_path):
    trees = Trees(hybrid(tmp_path, controllers=('memory',)))
    trees.check(spec({'memory_max': '1G'}))
    with pytest.raises(NoTree) as caught:
        trees.check(spec({'memory_max': '1G', 'pids_max': 3, 'cpu_max': 0.25}))
    assert str(caught.value) == ('cannot enforce cpu_max 0.25, pids_max 3: no such controller '
                                 'on this host')


def test_adopt_checks_the_recorded_cgroup(tmp_path):
    groups = hybrid(tmp_path)
    trees = Trees(groups)
    own = fs.own_paths('/proc/self/cgroup').get('')
    assert trees.adopt('web', '/diprocd/other.json/web.proc', os.getpid(), None) is False
    assert trees.adopt('web', '/diprocd/etc-w.json/web.proc', os.getpid(), None) is \
        (own == '/diprocd/etc-w.json/web.proc')
    assert trees.record('web') is None, 'not adopted: no tree kept'
