"""Record: a small immutable value with named fields, for events and actions.

What `@dataclass(frozen=True)` gives them (keyword or positional fields,
defaults, equality, hashing, a readable repr, no assignment), without
generating code at import: dataclasses exec() half a dozen functions per
class, about 1 ms each, and that was a third of every daemon's start-up.

    class LinkEvent(Record):
        socket: str
        kind: str
        detail: str = ''
"""


class FrozenRecordError(AttributeError):
    pass


class Record:
    _fields = ()
    _defaults = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get('__annotations__', {})
        cls._fields = tuple(f for f in cls._fields if f not in own) + tuple(own)
        cls._defaults = dict(cls._defaults, **{name: cls.__dict__[name] for name in own
                                                if name in cls.__dict__})
        cls._field_set = frozenset(cls._fields)

    def __init__(self, *args, **kwargs):
        if not kwargs and len(args) == len(self._fields):   # the common cases, made often
            self.__dict__.update(zip(self._fields, args))
            return
        if not args and len(kwargs) == len(self._fields) and kwargs.keys() == self._field_set:
            self.__dict__.update(kwargs)
            return
        if len(args) > len(self._fields):
            raise TypeError('%s takes %d fields, %d given'
                            % (type(self).__name__, len(self._fields), len(args)))
        values = dict(zip(self._fields, args))
        for name, value in kwargs.items():
            if name not in self._fields or name in values:
                raise TypeError('%s: unexpected or repeated field %r'
                                % (type(self).__name__, name))
            values[name] = value
        for name in self._fields:
            if name not in values:
                if name not in self._defaults:
                    raise TypeError('%s: missing field %r' % (type(self).__name__, name))
                values[name] = self._defaults[name]
        self.__dict__.update(values)

    def _replace(self, **changes):
        """A copy with `changes` (as namedtuple's _replace)."""
        # the declared fields only, not what a cached_property keeps in __dict__
        return type(self)(**dict(zip(self._fields, self._values()), **changes))

    def _values(self):
        return tuple(self.__dict__[name] for name in self._fields)

    def __eq__(self, other):
        if type(other) is not type(self):
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self):
        return hash((type(self), self._values()))

    def __repr__(self):
        return '%s(%s)' % (type(self).__name__, ', '.join(
            '%s=%r' % (name, self.__dict__[name]) for name in self._fields))

    def __setattr__(self, name, value):
        raise FrozenRecordError('%s is immutable' % type(self).__name__)

    def __delattr__(self, name):
        raise FrozenRecordError('%s is immutable' % type(self).__name__)
