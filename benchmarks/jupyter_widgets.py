"""Message traffic and update latency of the live widgets in a real Jupyter kernel.

Starts a kernel (kernelspec ``python3``), runs ``%rain start`` in it, and for each graph
size runs a ``%%rain`` cell of N ``Sleep(x, 0)`` tasks named ``stage{i%10}/t`` (ten
chains: task i depends on task i-10), then ``rain_session.wait_all()``. Everything the
kernel publishes on IOPub is read here, as a notebook front end would receive it, and the
widget messages (``comm_open``/``comm_msg``/``comm_close``) are counted with their size.
Inside the kernel the widget reports its redraws and latencies (event received by the
client's I/O thread -> traits set).

    python benchmarks/jupyter_widgets.py               # 10k and 100k tasks
    python benchmarks/jupyter_widgets.py --tasks 1000  # a quick run
"""
import argparse
import json
import queue
import time

from jupyter_client.manager import start_new_kernel

BUILD = """%%rain bench{n}
from rain.client import blob, tasks
import time as _t
_src = blob(b"x")
_made = []
for _i in range({n}):
    _made.append(tasks.Sleep(_made[_i - 10] if _i >= 10 else _src, 0,
                             name=f"stage{{_i % 10}}/t"))
"""

WAIT = """
import json, time
_t0 = time.monotonic()
rain_session.wait_all()
_run = time.monotonic() - _t0
_deadline = time.monotonic() + 10
while rain_widget.progress.finished < {n} and time.monotonic() < _deadline:
    time.sleep(0.01)
time.sleep(0.5)
_w = rain_widget
print("RESULT", json.dumps({{"wait_all_s": _run, "flushes": _w.flushes,
    "latency": _w.latency_stats, "events": _w.tracker.events_received,
    "finished": _w.progress.finished, "status": _w.progress.status,
    "graph": [_w.graph.mode, _w.graph.nodes],
    "snapshot_bytes": len(_w.snapshot_html())}}))
"""


def size_of(msg):
    return len(json.dumps(msg["content"], default=str)) + sum(
        len(b) for b in msg.get("buffers") or ())


class Reader:
    """Reads every IOPub message; counts widget traffic."""

    def __init__(self, kc):
        self.kc = kc
        self.reset()

    def reset(self):
        self.comm = 0
        self.comm_bytes = 0
        self.display = 0
        self.other = 0
        self.first = self.last = None
        self.stdout = []

    def pump(self, until_idle_of=None, timeout=600.0, settle=None):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                msg = self.kc.get_iopub_msg(timeout=0.2 if settle else 1.0)
            except queue.Empty:
                if settle:
                    return
                continue
            kind = msg["header"]["msg_type"]
            now = time.monotonic()
            if kind.startswith("comm_"):
                self.comm += 1
                self.comm_bytes += size_of(msg)
                self.first = self.first or now
                self.last = now
            elif kind in ("display_data", "update_display_data"):
                self.display += 1
            elif kind == "stream":
                self.stdout.append(msg["content"]["text"])
            elif kind == "error":
                raise RuntimeError("\n".join(msg["content"]["traceback"]))
            else:
                self.other += 1
            if until_idle_of and kind == "status" and \
                    msg["content"]["execution_state"] == "idle" and \
                    msg["parent_header"].get("msg_id") == until_idle_of:
                return
        if not settle:
            raise TimeoutError("kernel did not finish in time")


def run(reader, kc, code):
    msg_id = kc.execute(code)
    reader.pump(until_idle_of=msg_id)
    return msg_id


def measure(kc, reader, n):
    reader.reset()
    started = time.monotonic()
    run(reader, kc, BUILD.format(n=n))
    build = time.monotonic() - started
    run(reader, kc, WAIT.format(n=n))
    reader.pump(settle=True)
    result = json.loads("".join(reader.stdout).split("RESULT", 1)[1].strip().splitlines()[0])
    result.update({"tasks": n, "build_submit_s": round(build, 2),
                   "comm_messages": reader.comm, "comm_kbytes": round(reader.comm_bytes / 1024),
                   "display_messages": reader.display,
                   "total_s": round(time.monotonic() - started, 2)})
    window = (reader.last - reader.first) if reader.first else 0
    result["comm_msgs_per_s"] = round(reader.comm / window, 1) if window else None
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--governors", type=int, default=2)
    parser.add_argument("--cpus", type=int, default=1)
    parser.add_argument("--kernel", default="python3")
    args = parser.parse_args()
    km, kc = start_new_kernel(kernel_name=args.kernel)
    reader = Reader(kc)
    try:
        run(reader, kc, "%load_ext rain_jupyter")
        run(reader, kc, f"%rain start --governors {args.governors} --cpus {args.cpus}")
        for n in args.tasks:
            result = measure(kc, reader, n)
            print(json.dumps(result), flush=True)
        run(reader, kc, "%rain stop")
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)


if __name__ == "__main__":
    main()
