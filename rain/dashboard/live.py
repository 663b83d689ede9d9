"""The run model of a running server (no Bokeh needed: the REST API uses it too)."""
from .model import RunModel


def live_model(server):
    """The run model of a running server, fed by its event log (created once)."""
    model = getattr(server, "run_model", None)
    if model is not None:
        return model
    core = server.core

    def task_type_of(session_id, task_id):
        session = core.sessions.get(session_id)
        task = session.tasks.get(task_id) if session is not None else None
        return task.task_type if task is not None else None

    model = RunModel(task_type_of)
    server.events.listeners.append(model.feed_live)
    server.run_model = model
    return model


def live_edges_provider(server):
    """Edges of a session's graph from the server's core (only while the session is open).

    ``detailed``: one node per task; else the edges between task-name groups. Runs once per
    submit a viewer looks at (O(tasks)), never per event."""
    core = server.core

    def provider(session_id, detailed):
        session = core.sessions.get(session_id)
        if session is None or not session.tasks:
            return None
        tasks = session.tasks.values()
        if detailed:
            nodes = [(t.id, t.name or t.task_type) for t in tasks]
            edges = [(obj.producer.id, t.id) for t in tasks for obj in t.inputs
                     if obj.producer is not None]
            return {"mode": "tasks", "nodes": nodes, "edges": edges}
        edges = set()
        for task in tasks:
            group = task.name or task.task_type
            for obj in task.inputs:
                producer = obj.producer
                if producer is not None:
                    edges.add((producer.name or producer.task_type, group))
        return {"mode": "groups", "edges": sorted(edges)}

    return provider
