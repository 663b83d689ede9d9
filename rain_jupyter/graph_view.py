"""The task graph reduced to what can be drawn: one node per task for small graphs, else
one node per task-name group (at the deepest level of ``a/b/c`` names that fits), else one
node per range of graph levels.

Pure state like ``progress``: the session tracker feeds it the graph when tasks are
submitted (``add_tasks``) and every state change (``on_transition``), under its lock.
A layout is ``nodes`` (position, member counts by state) and aggregated ``edges``.
"""
COLORS = {"waiting": "#c9ccd1", "running": "#3b8fd9", "finished": "#4caf50",
          "failed": "#e0443e", "cancelled": "#e6a23c"}


class Node:
    __slots__ = ("key", "label", "x", "y", "counts", "size")

    def __init__(self, key, label, x):
        self.key = key
        self.label = label
        self.x = x
        self.y = 0.0
        self.counts = [0, 0, 0, 0]    # total, running, finished, failed

    @property
    def state(self):
        total, running, finished, failed = self.counts
        if failed:
            return "failed"
        if total and finished == total:
            return "finished"
        if running or finished:
            return "running"
        return "waiting"


def truncate(group, depth):
    parts = group.split("/")
    return group if len(parts) <= depth else "/".join(parts[:depth])


class GraphModel:
    """The drawable form of one session's graph (at most ``max_nodes`` nodes)."""

    def __init__(self, max_nodes=150):
        self.max_nodes = max_nodes
        self._order = []          # task ids in submit order
        self._group = {}          # task id -> group name
        self._level = {}          # task id -> longest path from a source task
        self._inputs = {}         # task id -> producer task ids
        self.mode = "tasks"
        self.depth = None
        self.nodes = []
        self.edges = []           # (source index, target index, number of task edges)
        self._node_of = {}        # task id -> Node
        self.version = 0

    @property
    def task_count(self):
        return len(self._order)

    def add_tasks(self, entries, state_of):
        """``entries``: ``(task_id, group, producer_task_ids)`` in creation order (a
        task's producers come before it). ``state_of(task_id)`` gives current states."""
        level = self._level
        for task_id, group, producers in entries:
            if task_id in level:
                continue
            top = -1
            for producer in producers:
                value = level.get(producer, -1)
                if value > top:
                    top = value
            level[task_id] = top + 1
            self._group[task_id] = group
            if producers:
                self._inputs[task_id] = producers
            self._order.append(task_id)
        self._rebuild(state_of)

    def on_transition(self, task_id, old, new):
        node = self._node_of.get(task_id)
        if node is None or old is None:
            return
        counts = node.counts
        if old:
            counts[old] -= 1
        if new:
            counts[new] += 1
        self.version += 1

    # -- aggregation --------------------------------------------------------------------------
    def _rebuild(self, state_of):
        order = self._order
        limit = self.max_nodes
        if len(order) <= limit:
            self.mode, self.depth = "tasks", None
            keys = {task_id: task_id for task_id in order}
            labels = {task_id: f"{self._group[task_id]} #{task_id}" for task_id in order}
        else:
            keys = None
            groups = set(self._group.values())
            deepest = max(group.count("/") for group in groups) + 1
            for depth in range(deepest, 0, -1):
                folded = {group: truncate(group, depth) for group in groups}
                if len(set(folded.values())) <= limit:
                    self.mode, self.depth = "groups", depth
                    keys = {task_id: folded[self._group[task_id]] for task_id in order}
                    labels = {key: key for key in folded.values()}
                    break
            if keys is None:
                levels = max(self._level.values()) + 1
                width = -(-levels // limit)
                self.mode, self.depth = "levels", width
                keys = {task_id: self._level[task_id] // width for task_id in order}
                labels = {}
                for bucket in set(keys.values()):
                    first, last = bucket * width, min(levels, (bucket + 1) * width) - 1
                    labels[bucket] = f"level {first}" if first == last else \
                        f"levels {first}-{last}"
        nodes = {}
        node_of = {}
        level = self._level
        for task_id in order:
            key = keys[task_id]
            node = nodes.get(key)
            if node is None:
                node = nodes[key] = Node(key, labels[key], level[task_id])
            elif level[task_id] < node.x:
                node.x = level[task_id]
            node_of[task_id] = node
            counts = node.counts
            counts[0] += 1
            state = state_of(task_id)
            if state:
                counts[state] += 1
        if self.mode == "levels":
            for node in nodes.values():
                node.x = node.key
        node_list = list(nodes.values())
        index = {id(node): i for i, node in enumerate(node_list)}
        edges = {}
        for task_id, producers in self._inputs.items():
            target = index[id(node_of[task_id])]
            for producer in producers:
                source_node = node_of.get(producer)
                if source_node is None:
                    continue
                source = index[id(source_node)]
                if source != target:
                    edges[(source, target)] = edges.get((source, target), 0) + 1
        self._place(node_list)
        self.nodes = node_list
        self.edges = [(s, t, n) for (s, t), n in edges.items()]
        self._node_of = node_of
        self.version += 1

    @staticmethod
    def _place(nodes):
        columns = {}
        for node in nodes:
            columns.setdefault(node.x, []).append(node)
        xs = sorted(columns)
        rank = {x: i for i, x in enumerate(xs)}
        for x, column in columns.items():
            middle = (len(column) - 1) / 2
            for i, node in enumerate(column):
                node.y = middle - i
            for node in column:
                node.x = rank[x]

    # -- output ------------------------------------------------------------------------------
    def layout(self, ended=False):
        """Plain data of the current drawing (copied, safe to use outside the lock).
        Once the session has ``ended`` (failed or closed), what was left to do is
        cancelled: it will never run."""
        nodes = []
        for node in self.nodes:
            total, running, finished, failed = node.counts
            state = node.state
            cancelled = 0
            if ended:
                cancelled, running = total - finished - failed, 0
                if state in ("waiting", "running"):
                    state = "cancelled"
            nodes.append({"key": node.key, "label": node.label, "x": node.x, "y": node.y,
                          "total": total, "running": running, "finished": finished,
                          "failed": failed, "cancelled": cancelled, "state": state})
        return {"mode": self.mode, "depth": self.depth, "tasks": len(self._order),
                "nodes": nodes, "edges": list(self.edges)}

    def describe(self):
        count = len(self._order)
        if self.mode == "tasks":
            return f"{count} tasks"
        if self.mode == "groups":
            return (f"{count} tasks in {len(self.nodes)} name groups"
                    f" (names cut at depth {self.depth})")
        return f"{count} tasks in {len(self.nodes)} level ranges"


__all__ = ["GraphModel", "COLORS"]
