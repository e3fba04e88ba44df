"""safereplace: a file replaced whole, through a directory reached without links."""
import os
import stat

import pytest

from dpd import safereplace
from dpd.safefile import UnsafePath


@pytest.fixture
def base(tmp_path):
    os.chmod(tmp_path, 0o755)
    return tmp_path


def test_the_file_is_replaced_whole_mode_0644_whatever_the_umask(base):
    path = base / 'diprocd.prom'
    path.write_text('old\n')
    inode = path.stat().st_ino
    old_umask = os.umask(0o077)
    try:
        safereplace.replace(str(path), b'new\n')
    finally:
        os.umask(old_umask)
    assert path.read_text() == 'new\n'
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert path.stat().st_ino != inode, 'a new file renamed over the old one'
    assert os.listdir(base) == ['diprocd.prom'], 'no temp file left'


def test_a_temp_file_left_by_a_dead_worker_is_no_obstacle(base):
    (base / ('.diprocd.prom.%d.tmp' % os.getpid())).write_text('half')
    safereplace.replace(str(base / 'diprocd.prom'), b'whole\n')
    assert os.listdir(base) == ['diprocd.prom']


def test_a_link_in_place_of_the_file_is_refused_and_its_target_untouched(base):
    target = base / 'precious'
    target.write_text('keep\n')
    os.symlink(target, base / 'diprocd.prom')
    with pytest.raises(UnsafePath, match='symbolic link'):
        safereplace.replace(str(base / 'diprocd.prom'), b'x')
    assert target.read_text() == 'keep\n'
    assert os.path.islink(base / 'diprocd.prom')


def test_a_directory_in_place_of_the_file_is_refused(base):
    os.mkdir(base / 'diprocd.prom')
    with pytest.raises(UnsafePath, match='not a regular file'):
        safereplace.replace(str(base / 'diprocd.prom'), b'x')


def test_the_node_policy_confines_where_the_directory_really_is(base):
    allowed, outside = base / 'allowed', base / 'outside'
    os.mkdir(allowed)
    os.mkdir(outside)
    os.symlink(outside, allowed / 'escape')
    with pytest.raises(UnsafePath, match='outside the node policy'):
        safereplace.replace(str(outside / 'm.prom'), b'x', confine=(str(allowed),))
    with pytest.raises(UnsafePath, match='outside the node policy'):
        safereplace.replace(str(allowed / 'escape' / 'm.prom'), b'x', confine=(str(allowed),))
    assert os.listdir(outside) == []
    safereplace.replace(str(allowed / 'm.prom'), b'x', confine=(str(allowed),))
    assert (allowed / 'm.prom').read_bytes() == b'x'


def test_remove_takes_a_regular_file_and_leaves_anything_else(base):
    safereplace.replace(str(base / 'a.prom'), b'x')
    safereplace.remove(str(base / 'a.prom'))
    assert not os.path.lexists(base / 'a.prom')
    os.symlink('/etc/passwd', base / 'b.prom')
    safereplace.remove(str(base / 'b.prom'))
    assert os.path.islink(base / 'b.prom')
    safereplace.remove(str(base / 'missing' / 'c.prom'))   # nothing there: no error
