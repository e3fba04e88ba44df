"""Record: the immutable values events, actions and configs are made of."""
import subprocess
import sys

import pytest

from dpd.record import FrozenRecordError, Record


class Point(Record):
    x: int
    y: int = 0


class Labelled(Point):
    label: str = 'p'


def test_fields_by_position_and_keyword_with_defaults():
    assert Point(1).y == 0 and Point(1, 2).y == 2 and Point(y=3, x=1).x == 1
    assert Labelled(1, 2, 'q').label == 'q' and Labelled(1).label == 'p'
    assert Labelled._fields == ('x', 'y', 'label')


@pytest.mark.parametrize('make', [lambda: Point(), lambda: Point(1, 2, 3),
                                  lambda: Point(1, x=2), lambda: Point(1, z=2)])
def test_a_wrong_call_is_a_type_error(make):
    with pytest.raises(TypeError):
        make()


def test_equality_and_hash_by_type_and_values():
    assert Point(1, 2) == Point(1, 2) and hash(Point(1, 2)) == hash(Point(1, 2))
    assert Point(1, 2) != Point(2, 1)
    assert Point(1, 0) != Labelled(1, 0), 'another type is never equal'
    assert len({Point(1), Point(1), Point(2)}) == 2


def test_immutable():
    point = Point(1)
    with pytest.raises(FrozenRecordError):
        point.x = 2
    with pytest.raises(AttributeError):
        del point.y
    assert point.x == 1


def test_repr_names_every_field():
    assert repr(Labelled(1)) == "Labelled(x=1, y=0, label='p')"


def test_the_daemons_import_neither_dataclasses_nor_asyncio():
    """Both cost tens of milliseconds at every start (dataclasses generate code per
    class; pyzmq's monitor parser pulls in asyncio)."""
    code = ('import sys, dpd.worker.main, dpd.cluster.masterd, dpd.cluster.clientd, dpd.ctl.main; '
            'print(sorted({"dataclasses", "asyncio"} & set(sys.modules)))')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert out.strip() == '[]'


def test_a_value_cached_on_a_record_is_not_a_field():
    """Desired.view keeps what it made in the record's __dict__: equality, hashing
    and _replace see the fields only."""
    from dpd.cluster.nodes import Desired
    first = Desired(1, 'a' * 64, b'[]', 0)
    assert first.view == {'gen': 1, 'sha256': 'a' * 64, 'processes': 0}
    assert first.view is first.view
    assert first == Desired(1, 'a' * 64, b'[]', 0)
    assert hash(first) == hash(Desired(1, 'a' * 64, b'[]', 0))
    assert first._replace(gen=2).view['gen'] == 2
