"""PROCESS key `depends` (SPEC 6.1): the order processes of one file start and stop in.

Pure. The checks of a whole list (every name another process of the same
file, no cycle) give the messages a rejected file shows; the worker's policy
asks the same graph who waits for whom.
"""
import difflib
import itertools

from . import jsonfile
from .schema import Problems


MAX_FOUND = Problems.LIMIT + 1     # one past what a rejected file lists: it says "more"
HINT_BUDGET = 20000     # names compared for "did you mean" hints, in all: get_close_matches
                        # costs each hint a comparison with every name of the file


def problems_of(specs, labels, named):
    """(label, problem) for each unknown dependency and each cycle of `specs`, at
    most MAX_FOUND of them (a file that lists more says there are more).
    `named`: every name the file gives, an entry that is invalid otherwise too."""
    return list(itertools.islice(_problems(specs, labels, named), MAX_FOUND))


def _problems(specs, labels, named):
    """The problems, one at a time: they are asked for until there are enough, so
    a file of countless unknown names costs no more than MAX_FOUND of them."""
    names = {spec.name for spec in specs}
    hints = _Hints(named)
    for spec, label in zip(specs, labels):
        for dep in spec.depends:
            if dep not in named:
                yield label, 'unknown process %s%s' % (jsonfile.quote(dep), hints.hint(dep))
    graph = {spec.name: [d for d in spec.depends if d in names] for spec in specs}
    label_of = dict(zip((spec.name for spec in specs), labels))
    for cycle in cycles(graph):
        yield label_of[cycle[0]], 'cycle %s' % ' -> '.join(cycle + [cycle[0]])


class _Hints:
    """The "did you mean" of an unknown name, while the work stays within
    HINT_BUDGET comparisons: twenty hints among a thousand names, none among more
    than HINT_BUDGET."""

    def __init__(self, named):
        self.named, self.sorted, self.budget = named, None, HINT_BUDGET

    def hint(self, name):
        if len(self.named) > self.budget:
            return ''
        self.budget -= len(self.named)
        if self.sorted is None:
            self.sorted = sorted(self.named)        # once: the same order every time
        close = difflib.get_close_matches(name, self.sorted, n=1, cutoff=0.6)
        return ' (did you mean %s?)' % jsonfile.quote(close[0]) if close else ''


def cycles(graph):
    """One cycle of each knot of `graph` (name -> names it depends on), as a list of
    names starting at the knot's first name in the graph's order. Linear: a file
    crafted with countless cycles costs no more than a plain one."""
    if not any(graph.values()):         # no process depends on another: no cycle
        return []
    order = {name: i for i, name in enumerate(graph)}
    found = []
    for component in _components(graph):
        start = min(component, key=order.get)
        if len(component) > 1 or start in graph[start]:
            found.append(_path_back(graph, start, component))
    return sorted(found, key=lambda cycle: order[cycle[0]])


def _components(graph):
    """Strongly connected components (Tarjan, without recursion)."""
    index, low, on_stack, stack, found, counter = {}, {}, set(), [], [], [0]
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(graph[root]))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            name, deps = work[-1]
            dep = next(deps, None)
            if dep is not None:
                if dep not in index:
                    index[dep] = low[dep] = counter[0]
                    counter[0] += 1
                    stack.append(dep)
                    on_stack.add(dep)
                    work.append((dep, iter(graph[dep])))
                elif dep in on_stack:
                    low[name] = min(low[name], index[dep])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[name])
            if low[name] == index[name]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == name:
                        break
                found.append(component)
    return found


def _path_back(graph, start, component):
    """The shortest way from `start` back to itself inside `component`."""
    previous, frontier = {}, [start]
    while frontier:
        following = []
        for name in frontier:
            for dep in graph[name]:
                if dep == start:
                    path = [name]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return path[::-1]
                if dep in component and dep not in previous:
                    previous[dep] = name
                    following.append(dep)
        frontier = following
    return [start]


def dependents(procs, name):
    """The names of `procs` (name -> object with .spec) that depend on `name`."""
    return [other for other, proc in procs.items() if name in proc.spec.depends]
