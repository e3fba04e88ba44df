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


def test_a_temp_name_kept_taken_gets_a_name_nobody_can_guess(base, monkeypatch):
    """Whoever may write the directory can take the temp name again after each
    unlink: the write goes on under a random name (it would fail for ever)."""
    taken = '.state.json.%d.tmp' % os.getpid()
    real_unlink = os.unlink

    def unlink_and_take_again(name, dir_fd=None):
        real_unlink(name, dir_fd=dir_fd)
        if name == taken:
            os.close(os.open(name, os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=dir_fd))

    (base / taken).write_text('planted')
    monkeypatch.setattr(os, 'unlink', unlink_and_take_again)
    safereplace.replace(str(base / 'state.json'), b'{}\n')
    assert (base / 'state.json').read_text() == '{}\n'
    assert sorted(os.listdir(base)) == [taken, 'state.json']


@pytest.mark.skipif(os.geteuid() != 0, reason='a link of another user needs root')
def test_a_directory_on_the_way_swapped_for_a_users_link_is_refused(base):
    """A user owning a directory on the way replaces it by a link to /etc: root's
    file must not land there (a root-owned link, such as /var/run, is followed)."""
    elsewhere = base / 'etc'
    elsewhere.mkdir()
    users = base / 'home'
    users.mkdir()
    os.symlink(str(elsewhere), str(users / 'logs'))
    os.lchown(str(users / 'logs'), 65534, 65534)
    with pytest.raises(UnsafePath, match='logs on the way is a symbolic link of uid 65534'):
        safereplace.replace(str(users / 'logs' / 'state.json'), b'{}\n')
    assert os.listdir(elsewhere) == []
    os.lchown(str(users / 'logs'), 0, 0)
    safereplace.replace(str(users / 'logs' / 'state.json'), b'{}\n')
    assert os.listdir(elsewhere) == ['state.json']


def test_links_on_the_way_are_followed_from_where_they_lie_and_not_for_ever(base):
    (base / 'real').mkdir()
    os.symlink('real', str(base / 'relative'))
    os.symlink('loop', str(base / 'loop'))
    safereplace.replace(str(base / 'relative' / 'f'), b'x')
    assert (base / 'real' / 'f').read_bytes() == b'x'
    with pytest.raises(UnsafePath, match='Too many levels of symbolic links'):
        safereplace.replace(str(base / 'loop' / 'f'), b'x')
