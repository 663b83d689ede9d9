"""Rain 0.4's executor protocol (``cbor-1``): translation to and from ours.

Executors built for Rain 0.4 (its C++ and Rust tasklibs, its Python executor) register
with ``["register", {"protocol": "cbor-1", ...}]``. The governor keeps speaking its own
message bodies internally; for such an executor ``Executor`` passes each ``call`` body
through ``to_call`` and each ``result`` body through ``from_result``. See
``docs/executor-protocol.md`` for both protocols and a table of their differences.
"""
import cbor2

PROTOCOL = "cbor-1"


class ProtocolError(Exception):
    """The executor sent a message that is not valid ``cbor-1``."""


def _data_type(ours):
    return "directory" if ours == "dir" else "blob"


def _location(ours):
    kind = ours[0]
    if kind == "cached":
        return "cached"
    return [kind, ours[1]]


def to_call(body):
    """Our ``call`` body as Rain 0.4's ``CallMsg``."""
    task = body["task"]
    task_id = list(task["id"])
    config = task.get("config")
    inputs = []
    spec_inputs = []
    for entry in body["inputs"]:
        content_type = entry.get("content_type") or ""
        spec = {"id": list(entry["id"]), "label": entry.get("label"),
                "content_type": content_type,
                "data_type": _data_type(entry.get("data_type")), "user": {}}
        info = {"size": entry.get("size"), "content_type": content_type, "error": "",
                "debug": "", "user": {}}
        inputs.append({"spec": spec, "info": info, "location": _location(entry["location"]),
                       "cache_hint": False})
        spec_inputs.append({"id": spec["id"], "label": spec["label"]})
    outputs = [{"id": list(o["id"]), "label": o.get("label"),
                "content_type": o.get("content_type") or "",
                "data_type": _data_type(o.get("data_type")), "user": {}}
               for o in body["outputs"]]
    spec = {"id": task_id, "inputs": spec_inputs, "task_type": task.get("type"),
            "outputs": [o["id"] for o in outputs],
            "config": cbor2.loads(config) if config else None,
            "resources": dict(task.get("resources") or {"cpus": 1}),
            "name": task.get("name"), "user": dict(task.get("user") or {})}
    return {"spec": spec, "inputs": inputs, "outputs": outputs}


def _our_location(location):
    if location == "cached" or not isinstance(location, list) or len(location) != 2:
        raise ProtocolError(f"invalid output location {location!r}")
    kind, value = location
    if kind == "other_object":
        return ["other", list(value)]
    if kind in ("memory", "path"):
        return [kind, value]
    raise ProtocolError(f"invalid output location {location!r}")


def from_result(body):
    """Rain 0.4's ``ResultMsg`` as our ``result`` body."""
    if not isinstance(body, dict):
        raise ProtocolError("malformed result")
    info = body.get("info") or {}
    if not isinstance(info, dict):
        info = {}
    ours_info = {key: info[key] for key in ("error", "debug", "user") if info.get(key)}
    result = {"success": bool(body.get("success")), "info": ours_info}
    if result["success"]:
        outputs = []
        for out in body.get("outputs") or ():
            if not isinstance(out, dict):
                raise ProtocolError("malformed output in result")
            out_info = out.get("info") or {}
            entry = {"location": _our_location(out.get("location")),
                     "content_type": out_info.get("content_type") or None}
            if out_info.get("user"):
                entry["info"] = {"user": out_info["user"]}
            outputs.append(entry)
        result["outputs"] = outputs
    elif not ours_info.get("error"):
        ours_info["error"] = "task failed in the executor"
    cached = body.get("cached_objects")
    if cached:
        result["cached"] = [list(key) for key in cached]
    return result
