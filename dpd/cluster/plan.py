"""What a master file would change on each node (SPEC 6.5, `dpd-ctl plan`): pure.

A node's change is said the way the worker will see it: processes added,
removed, and those whose definition differs, key by key, with the keys'
defaults filled in (a key written out with its default value changes
nothing, as for the worker). `env` values are never shown.
"""
from ..procspec import SPEC_FIELDS, parse_process_list
from ..record import Record
from ..schema import Problems

MASK = '***'


class NodeChange(Record):
    node: str
    added: tuple = ()             # names
    removed: tuple = ()           # names
    changed: tuple = ()           # (name, key, old, new), values as JSON or MASK
    error: str = None             # the new list is invalid: why
    note: str = None              # what it was compared with, when not the node's own

    @property
    def changes(self):
        return bool(self.added or self.removed or self.changed or self.error)


def specs_of(entries, node):
    """name -> ProcessSpec of a valid list (defaults filled in)."""
    problems = Problems()
    specs = parse_process_list(list(entries), 'nodes[%s]' % node, problems, 'nobody')
    return {spec.name: spec for spec in specs or ()}


def node_change(node, old_specs, new_specs, note=None):
    """The change from `old_specs` to `new_specs` (name -> ProcessSpec); a name of
    `old_specs` mapped to None is known to run, its definition unknown."""
    added = tuple(name for name in new_specs if name not in old_specs)
    removed = tuple(name for name in old_specs if name not in new_specs)
    changed = []
    for name, new in new_specs.items():
        old = old_specs.get(name)
        if old is not None and old.fingerprint != new.fingerprint:
            changed.extend((name,) + difference for difference in _differences(old, new))
    return NodeChange(node, added, removed, tuple(changed), note=note)


def _differences(old, new):
    for key in SPEC_FIELDS:
        before, after = getattr(old, key), getattr(new, key)
        if before != after:
            if key == 'env':
                yield from _env_differences(dict(before), dict(after))
            else:
                yield key, _json(before), _json(after)


def _env_differences(before, after):
    """env.NAME per variable added, removed or changed: its name, never its value."""
    for name in sorted(set(before) | set(after)):
        if before.get(name) != after.get(name):
            yield ('env.' + name, MASK if name in before else None,
                   MASK if name in after else None)


def _json(value):
    if hasattr(value, 'record'):
        return value.record
    return list(value) if isinstance(value, tuple) else value
