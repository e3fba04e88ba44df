"""PROCESS key `depends` (SPEC 6.1): the order processes of one file start and stop in.

Pure. The checks of a whole list (every name another process of the same
file, no cycle) give the messages a rejected file shows; the worker's policy
asks the same graph who waits for whom.
"""
import difflib

from . import jsonfile


def problems_of(specs, labels, named):
    """(label, problem) for each unknown dependency and each cycle of `specs`.
    `named`: every name the file gives, an entry that is invalid otherwise too."""
    names = {spec.name for spec in specs}
    found = []
    for spec, label in zip(specs, labels):
        for dep in spec.depends:
            if dep not in named:
                close = difflib.get_close_matches(dep, sorted(named), n=1, cutoff=0.6)
                found.append((label, 'unknown process %s%s' % (
                    jsonfile.quote(dep), ' (did you mean %s?)' % jsonfile.quote(close[0])
                    if close else '')))
    graph = {spec.name: [d for d in spec.depends if d in names] for spec in specs}
    label_of = dict(zip((spec.name for spec in specs), labels))
    for cycle in cycles(graph):
        found.append((label_of[cycle[0]], 'cycle %s' % ' -> '.join(cycle + [cycle[0]])))
    return found


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
