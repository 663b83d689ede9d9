"""Garbage-collector settings for the long-running processes (server and governor).

Both allocate a few containers per task at thousands of tasks per second, nearly none of
them in cycles, and keep hundreds of thousands of objects alive (the graph, the store,
the delete list, the dashboard model). At Python's default (a young collection every 700
allocations) the collector took about a fifth of a governor's CPU time on tiny built-in
tasks; at 20,000 about a twentieth.
"""
import gc

#: Allocations between two young collections (Python's default: 700).
GC_YOUNG_THRESHOLD = 20000


def tune_gc():
    """Collect cycles less often, and never rescan what start-up left alive (modules,
    the schema, the process's setup)."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)
