"""A minimal executor that speaks Rain 0.4's executor protocol (``cbor-1``) exactly, as
Rain 0.4's tasklibs do: only its message shapes, nothing of ours. Task types
``cbor1/<method>``:

- ``hello``: ``b"Hello " + input 0`` (memory or file), as a memory output;
- ``to_file``: input 0 upper-cased, written to a file and returned by path;
- ``pass``: returns input 0 itself (``other_object``);
- ``keep``: like ``pass``, and reports input 0 as cached (so it may be sent ``"cached"``);
- ``fail``: a failed result with an error message;
- ``panic``: writes to stderr and dies in the middle of the call.

The executor exits with an error (failing its tasks) on anything it does not expect:
a message kind other than ``call``/``drop_cached``, a ``drop_cached`` of an object it
never reported cached, or a call whose shape differs from ``cbor-1``.
"""
import os
import socket
import sys

import cbor2


def send(sock, kind, body):
    payload = cbor2.dumps([kind, body])
    sock.sendall(len(payload).to_bytes(4, "little") + payload)


def receive_exact(sock, size):
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def receive(sock):
    header = receive_exact(sock, 4)
    if header is None:
        return None
    return cbor2.loads(receive_exact(sock, int.from_bytes(header, "little")))


def die(message):
    sys.stderr.write(f"cbor1 executor: {message}\n")
    sys.stderr.flush()
    os._exit(3)


def check_call(body):
    if set(body) != {"spec", "inputs", "outputs"}:
        die(f"call with keys {sorted(body)}")
    spec = body["spec"]
    for key in ("id", "inputs", "task_type", "outputs", "config", "resources", "name",
                "user"):
        if key not in spec:
            die(f"spec without {key!r}")
    if not (isinstance(spec["id"], list) and len(spec["id"]) == 2):
        die(f"task id {spec['id']!r}")
    for entry in body["inputs"]:
        if set(entry) != {"spec", "info", "location", "cache_hint"}:
            die(f"input with keys {sorted(entry)}")
        location = entry["location"]
        if location != "cached" and not (isinstance(location, list) and
                                         location[0] in ("memory", "path")):
            die(f"input location {location!r}")
    for spec_in, entry in zip(spec["inputs"], body["inputs"]):
        if spec_in["id"] != entry["spec"]["id"]:
            die("spec inputs differ from inputs")


def read_input(entry, memory):
    location = entry["location"]
    key = tuple(entry["spec"]["id"])
    if location == "cached":
        return memory[key]
    if location[0] == "memory":
        return location[1]
    with open(location[1], "rb") as f:
        return f.read()


def main():
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(os.environ["RAIN_EXECUTOR_SOCKET"])
    send(sock, "register", {"protocol": "cbor-1",
                            "executor_id": int(os.environ["RAIN_EXECUTOR_ID"]),
                            "executor_type": os.environ["RAIN_EXECUTOR_TYPE"]})
    cached = {}
    counter = 0
    while True:
        message = receive(sock)
        if message is None:
            return
        kind, body = message
        if kind == "drop_cached":
            for key in body["objects"]:
                if tuple(key) not in cached:
                    die(f"drop_cached of {key!r}, which was never reported cached")
                del cached[tuple(key)]
            continue
        if kind != "call":
            die(f"unexpected message kind {kind!r}")
        check_call(body)
        spec = body["spec"]
        method = spec["task_type"].split("/", 1)[1]
        result = {"task": spec["id"], "success": True, "outputs": [], "cached_objects": [],
                  "info": {"debug": "", "error": "", "user": {}}}
        data = [read_input(entry, cached) for entry in body["inputs"]]
        if method == "hello":
            result["outputs"].append({"info": {"content_type": ""}, "cache_hint": False,
                                      "location": ["memory", b"Hello " + data[0]]})
        elif method == "to_file":
            counter += 1
            path = os.path.abspath(f"out-{counter}")
            with open(path, "wb") as f:
                f.write(data[0].upper())
            result["outputs"].append({"info": {"content_type": ""}, "cache_hint": False,
                                      "location": ["path", path]})
        elif method in ("pass", "keep"):
            source = body["inputs"][0]["spec"]["id"]
            result["outputs"].append({"info": {"content_type": "", "user": {"seen": True}},
                                      "cache_hint": False,
                                      "location": ["other_object", source]})
            if method == "keep":
                cached[tuple(source)] = data[0]
                result["cached_objects"].append(source)
        elif method == "fail":
            result["success"] = False
            result["outputs"] = []
            result["info"]["error"] = "the task said no: " + data[0].decode()
        elif method == "panic":
            sys.stderr.write("thread 'main' panicked at 'index out of bounds'\n")
            sys.stderr.flush()
            os._exit(101)
        else:
            die(f"unknown method {method!r}")
        send(sock, "result", result)


if __name__ == "__main__":
    main()
