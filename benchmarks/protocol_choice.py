"""Protocol choice benchmark: pycapnp RPC vs. plain Cap'n Proto messages.

Compares, on TCP loopback with the client and the server in two separate
processes:

  A  pycapnp 2.x RPC: a capnp interface served with ``capnp.TwoPartyServer``
     over ``capnp.AsyncIoStream`` (asyncio integration, ``capnp.kj_loop()``).
  B  plain Cap'n Proto messages (``new_message`` / ``to_bytes`` /
     ``from_bytes``) sent in our own framing (4-byte little-endian length +
     message bytes) over ``asyncio.start_server`` / ``open_connection``.

Scenarios:
  1. submit of 10,000 tasks in one message/request; the server decodes every
     field of every task into Python tuples and replies with a small ack;
  2. 10,000 small governor updates sent as fast as the transport allows
     (B: many frames then one drain; A: pipelined calls, then gather);
  3. 2,000 sequential request/reply round trips of a tiny message.

Usage:  python benchmarks/protocol_choice.py
(The script re-executes itself with ``--serve A|B`` to start the server.)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import capnp

SCHEMA = """
@0xd4a1c3b2e5f60789;

struct InputRef {
  id @0 :Int32;
  label @1 :Text;
}

struct Task {
  id @0 :Int32;
  taskType @1 :Text;
  config @2 :Data;
  inputs @3 :List(InputRef);
  outputs @4 :List(Int32);
  cpus @5 :Int32;
  name @6 :Text;
}

enum TaskState {
  notAssigned @0;
  assigned @1;
  running @2;
  finished @3;
  failed @4;
}

struct Update {
  id @0 :Int32;
  state @1 :TaskState;
  info @2 :Data;
}

struct Ack {
  count @0 :UInt32;
  decodeNs @1 :Int64;
  checksum @2 :Int64;
}

# Envelope used by variant B (one envelope per frame).
struct Envelope {
  union {
    submit @0 :List(Task);
    update @1 :Update;
    ping @2 :UInt32;
    sync @3 :Void;
    ack @4 :Ack;
    pong @5 :UInt32;
  }
}

# Interface used by variant A.
interface Bench {
  submit @0 (tasks :List(Task)) -> (ack :Ack);
  update @1 (update :Update) -> ();
  ping @2 (seq :UInt32) -> (seq :UInt32);
  sync @3 () -> (ack :Ack);
}
"""

N_TASKS = 10_000
N_UPDATES = 10_000
N_PINGS = 2_000
REPS = 5
CONFIG = bytes(range(40))
INFO = bytes(range(20))
STATE_NAMES = ["notAssigned", "assigned", "running", "finished", "failed"]


def load_schema():
    fd, path = tempfile.mkstemp(suffix=".capnp", prefix="protocol_choice_")
    with os.fdopen(fd, "w") as f:
        f.write(SCHEMA)
    try:
        return capnp.load(path)
    finally:
        os.unlink(path)


schema = load_schema()


# --------------------------------------------------------------------------
# shared encode / decode helpers


def fill_tasks(tasks, base: int) -> None:
    """Fill a pre-initialised List(Task) builder with N_TASKS tasks."""
    for i in range(len(tasks)):
        t = tasks[i]
        tid = base + i
        t.id = tid
        t.taskType = "py/f"
        t.config = CONFIG
        inputs = t.init("inputs", 2)
        inp = inputs[0]
        inp.id = tid * 2
        inp.label = "in0"
        inp = inputs[1]
        inp.id = tid * 2 + 1
        inp.label = "in1"
        outputs = t.init("outputs", 1)
        outputs[0] = tid * 3
        t.cpus = 1
        t.name = "task"


def decode_tasks(tasks) -> list[tuple]:
    """Decode every field of every task into plain Python values."""
    out = []
    append = out.append
    for t in tasks:
        append(
            (
                t.id,
                t.taskType,
                t.config,
                tuple((i.id, i.label) for i in t.inputs),
                tuple(t.outputs),
                t.cpus,
                t.name,
            )
        )
    return out


def checksum(decoded: list[tuple]) -> int:
    return sum(d[0] + d[3][1][0] + d[4][0] + len(d[2]) for d in decoded)


def expected_checksum(base: int) -> int:
    return sum((base + i) + (base + i) * 2 + 1 + (base + i) * 3 + 40 for i in range(N_TASKS))


# --------------------------------------------------------------------------
# Variant B: plain messages in length-prefixed frames over asyncio streams


class FrameReader:
    """Reads length-prefixed frames from an asyncio StreamReader in chunks."""

    def __init__(self, reader: asyncio.StreamReader):
        self.reader = reader
        self.buf = bytearray()
        self.pos = 0

    async def frames(self):
        """Yield lists of complete frames (bytes) as they become available."""
        while True:
            chunk = await self.reader.read(1 << 20)
            if not chunk:
                return
            if self.pos:
                del self.buf[: self.pos]
                self.pos = 0
            self.buf += chunk
            buf = self.buf
            pos = 0
            end = len(buf)
            batch = []
            while end - pos >= 4:
                n = int.from_bytes(buf[pos : pos + 4], "little")
                if end - pos - 4 < n:
                    break
                batch.append(bytes(buf[pos + 4 : pos + 4 + n]))
                pos += 4 + n
            self.pos = pos
            if batch:
                yield batch


def frame(data: bytes) -> bytes:
    return len(data).to_bytes(4, "little") + data


def envelope_bytes(**kw) -> bytes:
    return schema.Envelope.new_message(**kw).to_bytes()


async def b_handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
    Envelope = schema.Envelope
    updates = 0
    upd_ns = 0
    fr = FrameReader(reader)
    async for batch in fr.frames():
        for data in batch:
            t0 = time.perf_counter_ns()
            with Envelope.from_bytes(data, traversal_limit_in_words=1 << 26) as env:
                which = env.which()
                if which == "update":
                    u = env.update
                    _ = (u.id, u.state.raw, u.info)
                    updates += 1
                    upd_ns += time.perf_counter_ns() - t0
                elif which == "ping":
                    writer.write(frame(envelope_bytes(pong=env.ping)))
                elif which == "submit":
                    decoded = decode_tasks(env.submit)
                    dt = time.perf_counter_ns() - t0
                    ack = {"count": len(decoded), "decodeNs": dt, "checksum": checksum(decoded)}
                    writer.write(frame(envelope_bytes(ack=ack)))
                elif which == "sync":
                    ack = {"count": updates, "decodeNs": upd_ns, "checksum": 0}
                    updates = 0
                    upd_ns = 0
                    writer.write(frame(envelope_bytes(ack=ack)))
        await writer.drain()
    writer.close()


async def b_serve():
    server = await asyncio.start_server(b_handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print(port, flush=True)
    async with server:
        await server.serve_forever()


class BClient:
    def __init__(self, reader, writer):
        self.reader = reader
        self.writer = writer

    async def recv(self):
        hdr = await self.reader.readexactly(4)
        return await self.reader.readexactly(int.from_bytes(hdr, "little"))

    async def recv_ack(self):
        data = await self.recv()
        with schema.Envelope.from_bytes(data) as env:
            a = env.ack
            return a.count, a.decodeNs, a.checksum


async def b_client(port: int) -> dict:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    c = BClient(reader, writer)
    res = {}

    # 1. submit
    totals, encs, decs = [], [], []
    for rep in range(REPS + 1):  # first repetition is a warm-up
        base = rep * N_TASKS
        t0 = time.perf_counter_ns()
        msg = schema.Envelope.new_message()
        fill_tasks(msg.init("submit", N_TASKS), base)
        data = msg.to_bytes()
        t1 = time.perf_counter_ns()
        writer.write(frame(data))
        await writer.drain()
        count, dec_ns, chk = await c.recv_ack()
        t2 = time.perf_counter_ns()
        assert count == N_TASKS and chk == expected_checksum(base), (count, chk)
        if rep:
            totals.append(t2 - t0)
            encs.append(t1 - t0)
            decs.append(dec_ns)
    res["submit"] = (totals, encs, decs, len(data))

    # 2. governor updates
    per = []
    for rep in range(REPS + 1):
        t0 = time.perf_counter_ns()
        Envelope = schema.Envelope
        for i in range(N_UPDATES):
            m = Envelope.new_message()
            u = m.init("update")
            u.id = i
            u.state = "running"
            u.info = INFO
            writer.write(frame(m.to_bytes()))
        writer.write(frame(envelope_bytes(sync=None)))
        await writer.drain()
        count, dec_ns, _ = await c.recv_ack()
        t1 = time.perf_counter_ns()
        assert count == N_UPDATES, count
        if rep:
            per.append(((t1 - t0) / N_UPDATES, dec_ns / N_UPDATES))
    res["updates"] = per

    # 3. round trips
    lat = []
    for i in range(N_PINGS + 100):
        t0 = time.perf_counter_ns()
        writer.write(frame(envelope_bytes(ping=i)))
        await writer.drain()
        data = await c.recv()
        with schema.Envelope.from_bytes(data) as env:
            assert env.pong == i
        if i >= 100:
            lat.append(time.perf_counter_ns() - t0)
    res["ping"] = lat

    writer.close()
    await writer.wait_closed()
    return res


# --------------------------------------------------------------------------
# Variant A: pycapnp RPC over capnp.AsyncIoStream


class BenchImpl(schema.Bench.Server):
    def __init__(self):
        self.updates = 0
        self.upd_ns = 0

    async def submit(self, tasks, _context, **kwargs):
        t0 = time.perf_counter_ns()
        decoded = decode_tasks(tasks)
        dt = time.perf_counter_ns() - t0
        ack = _context.results.init("ack")
        ack.count = len(decoded)
        ack.decodeNs = dt
        ack.checksum = checksum(decoded)

    async def update(self, update, _context, **kwargs):
        t0 = time.perf_counter_ns()
        _ = (update.id, update.state.raw, update.info)
        self.updates += 1
        self.upd_ns += time.perf_counter_ns() - t0

    async def ping(self, seq, _context, **kwargs):
        return seq

    async def sync(self, _context, **kwargs):
        ack = _context.results.init("ack")
        ack.count = self.updates
        ack.decodeNs = self.upd_ns
        self.updates = 0
        self.upd_ns = 0


async def a_new_connection(stream):
    await capnp.TwoPartyServer(stream, bootstrap=BenchImpl()).on_disconnect()


async def a_serve():
    server = await capnp.AsyncIoStream.create_server(a_new_connection, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print(port, flush=True)
    async with server:
        await server.serve_forever()


async def a_client(port: int) -> dict:
    stream = await capnp.AsyncIoStream.create_connection(host="127.0.0.1", port=port)
    client = capnp.TwoPartyClient(stream)
    bench = client.bootstrap().cast_as(schema.Bench)
    res = {}

    # 1. submit
    totals, encs, decs = [], [], []
    for rep in range(REPS + 1):
        base = rep * N_TASKS
        t0 = time.perf_counter_ns()
        req = bench.submit_request()
        fill_tasks(req.init("tasks", N_TASKS), base)
        t1 = time.perf_counter_ns()
        r = await req.send()
        t2 = time.perf_counter_ns()
        a = r.ack
        assert a.count == N_TASKS and a.checksum == expected_checksum(base), (a.count, a.checksum)
        if rep:
            totals.append(t2 - t0)
            encs.append(t1 - t0)
            decs.append(a.decodeNs)
    res["submit"] = (totals, encs, decs, None)

    # 2. governor updates: pipelined calls, then gather
    per = []
    for rep in range(REPS + 1):
        t0 = time.perf_counter_ns()
        promises = []
        for i in range(N_UPDATES):
            req = bench.update_request()
            u = req.init("update")
            u.id = i
            u.state = "running"
            u.info = INFO
            promises.append(req.send())
        await asyncio.gather(*promises)
        r = await bench.sync()
        t1 = time.perf_counter_ns()
        assert r.ack.count == N_UPDATES, r.ack.count
        if rep:
            per.append(((t1 - t0) / N_UPDATES, r.ack.decodeNs / N_UPDATES))
    res["updates"] = per

    # 3. round trips
    lat = []
    for i in range(N_PINGS + 100):
        t0 = time.perf_counter_ns()
        r = await bench.ping(i)
        assert r.seq == i
        if i >= 100:
            lat.append(time.perf_counter_ns() - t0)
    res["ping"] = lat

    del bench, client
    stream.close()
    return res


# --------------------------------------------------------------------------
# driver


def start_server(variant: str):
    proc = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--serve", variant],
        stdout=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    if not line.strip():
        proc.kill()
        raise RuntimeError(f"server {variant} did not start")
    return proc, int(line)


def run_variant(variant: str) -> dict:
    proc, port = start_server(variant)
    try:
        if variant == "A":
            return asyncio.run(capnp.run(a_client(port)))
        return asyncio.run(b_client(port))
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def pct(values, q):
    s = sorted(values)
    k = min(len(s) - 1, max(0, int(round(q * (len(s) - 1)))))
    return s[k]


def summarize(res: dict) -> dict:
    totals, encs, decs, size = res["submit"]
    upd = sorted(res["updates"])
    lat = res["ping"]
    return {
        "submit_ms": statistics.median(totals) / 1e6,
        "submit_us_task": statistics.median(totals) / 1e3 / N_TASKS,
        "enc_ms": statistics.median(encs) / 1e6,
        "dec_ms": statistics.median(decs) / 1e6,
        "size": size,
        "upd_us": statistics.median(u[0] for u in upd) * 1e-3,
        "upd_dec_us": statistics.median(u[1] for u in upd) * 1e-3,
        "rtt_med": statistics.median(lat) / 1e3,
        "rtt_p90": pct(lat, 0.9) / 1e3,
    }


def table(results: dict[str, dict]) -> str:
    names = {
        "A": "A: pycapnp RPC (TwoPartyServer / AsyncIoStream)",
        "B": "B: capnp messages + own framing (asyncio streams)",
    }
    rows = [
        ("1. submit 10k tasks: total wall (ms)", "submit_ms", "{:.1f}"),
        ("1. submit: per task (us)", "submit_us_task", "{:.2f}"),
        ("1. submit: client encode (ms)", "enc_ms", "{:.1f}"),
        ("1. submit: server decode to tuples (ms)", "dec_ms", "{:.1f}"),
        ("2. governor updates: per update, end to end (us)", "upd_us", "{:.2f}"),
        ("2. governor updates: server decode per update (us)", "upd_dec_us", "{:.2f}"),
        ("3. round trip: median (us)", "rtt_med", "{:.1f}"),
        ("3. round trip: p90 (us)", "rtt_p90", "{:.1f}"),
    ]
    variants = list(results)
    out = ["| metric | " + " | ".join(names[v] for v in variants) + " | B / A |"]
    out.append("|---|" + "---:|" * (len(variants) + 1))
    for label, key, fmt in rows:
        vals = [results[v][key] for v in variants]
        ratio = f"{vals[1] / vals[0]:.2f}" if len(vals) == 2 and vals[0] else ""
        out.append(f"| {label} | " + " | ".join(fmt.format(x) for x in vals) + f" | {ratio} |")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--serve", choices=["A", "B"], help=argparse.SUPPRESS)
    ap.add_argument("--only", choices=["A", "B"], help="run only one variant")
    args = ap.parse_args()
    if args.serve == "A":
        asyncio.run(capnp.run(a_serve()))
        return
    if args.serve == "B":
        asyncio.run(b_serve())
        return

    print(
        f"Python {platform.python_version()}, pycapnp {capnp.__version__}, "
        f"{os.cpu_count()} CPUs, {platform.machine()} {platform.system()}"
    )
    print(
        f"{N_TASKS} tasks per submit, {N_UPDATES} updates, {N_PINGS} round trips; "
        f"median of {REPS} repetitions (after 1 warm-up)\n"
    )
    results = {}
    for v in ["A", "B"] if args.only is None else [args.only]:
        t0 = time.perf_counter()
        results[v] = summarize(run_variant(v))
        print(f"variant {v} done in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    if "B" in results:
        print(f"B submit frame size: {results['B']['size'] / 1e6:.2f} MB\n")
    print(table(results))


if __name__ == "__main__":
    main()
