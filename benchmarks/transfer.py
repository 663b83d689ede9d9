"""Scenario (h): moving big objects between two governors and to the client.

    python benchmarks/transfer.py                      # 1 GiB and 4 GiB, Rain, Dask, Ray
    python benchmarks/transfer.py --sizes 1 --systems rain
    python benchmarks/transfer.py --smoke              # 64 MiB, Rain only

For each size, in the same run:
  raw     the same file copied over one loopback TCP connection (sendfile -> recv_into ->
          file in writes of at most 128 KiB): the plain copy every row is measured against
  splice  the same copy with the receiver moving the bytes socket -> pipe -> file with
          ``splice`` (one copy in the kernel instead of two), as Rain's receivers do for
          files without holes: the fastest plain copy known here, shown beside the rows,
          which can therefore exceed 100% of raw
  out     a task on governor A writes the file (``cp`` of the source) as its output:
          time from the submit to the task's end (storing it included), against a plain
          ``cp`` of the same file taken just before it
  g2g     a task on governor B takes that output as input: time from submitting B's task
          to its end
  g2c     the client streams the object into a file (``fetch_to``; ``fetch`` where the
          code under test has no ``fetch_to``)
  c2g     the client uploads the file as a constant (``blob(open(path, "rb"))``, streamed
          into governor A's store) and a task on governor A checks it: time from the
          start of the submit to that task's end (skipped where ``blob`` takes no file)
and the peak RSS of server, sending governor, receiving governor and client during each
transfer, minus their RSS just before it (sampled every 20 ms).

Right before each measured copy (raw, plain ``cp``, every row of every system) the script
writes and removes a scratch file of the object's size (``settle``; ``--cold`` leaves
it out). On the virtual machine of the recorded runs the same transfer into the page
cache took up to three times longer from one run to the next, and ran at the fast speed
whenever such a scratch file had just been removed: that machine hands freed memory back
to its host two seconds after it was freed, memory freed a moment before gets dearer to
write into within the first second, and a writer of new pages then waits for the host to
supply each one again (``transfer.md``; ``write_size.py``). The scratch write gives every
row pages freed a moment before, as the raw copy, which removes its target at once, mostly
gets too; the longer a transfer runs, the more of it writes into dearer memory, whatever
the program.

Dask (``client.scatter`` to worker 0 + a task on worker 1) and Ray (``ray.put`` + a task)
move the same bytes for comparison (1 GiB only: they hold objects in memory).

Run it with ``PYTHONPATH=<other checkout>`` to measure another version of Rain's code.
"""
import argparse
import fcntl
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import psutil

GiB = 1 << 30
MiB = 1 << 20


def make_source(path, size):
    """A file of ``size`` bytes that do not compress (a random MiB repeated)."""
    block = os.urandom(MiB)
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, MiB)
            f.write(block[:n])
            left -= n


class PeakRss:
    """Samples the RSS of some processes in a thread; ``peaks()`` above the first sample."""

    def __init__(self, procs):
        self.procs = procs
        self.base = {name: self._rss(p) for name, p in procs.items()}
        self.peak = dict(self.base)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @staticmethod
    def _rss(proc):
        try:
            return proc.memory_info().rss
        except psutil.Error:
            return 0

    def _run(self):
        while not self._stop.wait(0.02):
            for name, proc in self.procs.items():
                self.peak[name] = max(self.peak[name], self._rss(proc))

    def stop(self):
        self._stop.set()
        self._thread.join()
        return {name: (self.peak[name] - self.base[name]) / MiB for name in self.procs}


#: The splice copy's pipe (the largest an ordinary user may ask for by default).
PIPE_SIZE = 1 << 20
#: The raw copy's largest write: one write of megabytes (a big read) can cost the kernel
#: several times as much per byte (see ``rain.transfer.sinks.WRITE_SIZE``).
RAW_WRITE = 1 << 17


def loopback_copy(source, target, receive):
    """Copy ``source`` into the new file ``target`` over a loopback TCP connection: this
    thread sends it with ``sendfile``, another takes it in with ``receive(conn, fd, size)``.
    Returns the seconds taken and what ``receive`` returned; ``target`` is removed."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    size = os.path.getsize(source)
    result = {}

    def run():
        try:
            conn, _ = listener.accept()
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                with conn:
                    result["value"] = receive(conn, fd, size)
            finally:
                os.close(fd)
        except Exception as exc:
            result["error"] = exc

    thread = threading.Thread(target=run)
    start = time.perf_counter()
    thread.start()
    try:
        with socket.create_connection(listener.getsockname()) as sock, \
                open(source, "rb") as f:
            sock.sendfile(f)
    finally:
        thread.join()
        elapsed = time.perf_counter() - start
        listener.close()
        if os.path.exists(target):
            os.unlink(target)
    if "error" in result:
        raise result["error"]
    return elapsed, result["value"]


def write_in_pieces(fd, view, piece):
    """Write all of ``view`` to ``fd``, at most ``piece`` bytes per write."""
    done, size = 0, len(view)
    while done < size:
        done += os.write(fd, view[done:done + piece])


def _receive_as_it_comes(conn, fd, size):
    """The raw copy's receiver: what each read brings goes to the file at once."""
    view = memoryview(bytearray(4 * MiB))
    got = 0
    while got < size:
        n = conn.recv_into(view)
        if not n:
            break
        write_in_pieces(fd, view[:n], RAW_WRITE)
        got += n
    return got


def _receive_by_splice(conn, fd, size):
    """The splice copy's receiver: socket -> pipe -> file, never through this process."""
    read_end, write_end = os.pipe()
    try:
        fcntl.fcntl(write_end, getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_SIZE)
    except OSError:
        pass
    got = 0
    try:
        while got < size:
            count = os.splice(conn.fileno(), write_end, PIPE_SIZE)
            if not count:
                break
            left = count
            while left:
                left -= os.splice(read_end, fd, left)
            got += count
    finally:
        os.close(read_end)
        os.close(write_end)
    return got


def raw_copy(source, target, receive=_receive_as_it_comes):
    """Seconds to copy ``source`` into ``target`` over a loopback TCP connection (the
    splice copy: ``receive=_receive_by_splice``)."""
    elapsed, got = loopback_copy(source, target, receive)
    assert got == os.path.getsize(source), got
    return elapsed


# -- Rain ------------------------------------------------------------------------------------

class RainCluster:
    """A server and governors ``a`` and ``b`` (one CPU each, a named resource of their
    own so that a task can be put on either), started through Rain's own starter: a
    process that ends during the start fails it with the end of its log, and all are
    stopped together."""

    def __init__(self, tmp):
        from rain.starter import Cluster, StartError
        self.tmp = tmp
        self.address = f"127.0.0.1:{_free_port()}"
        self._cluster = Cluster(tmp, tmp, preexec_fn=_parent_death_setting())
        try:
            self.server = self._spawn("server", [
                "--listen", self.address, "--http-listen", f"127.0.0.1:{_free_port()}",
                "--logdir", os.path.join(tmp, "server-logs")])
            self.governors = []
            for name in ("a", "b"):
                config = os.path.join(tmp, f"{name}.toml")
                with open(config, "w") as f:
                    f.write(f"[resources]\n{name} = 1\n")
                self.governors.append(self._spawn(name, [
                    self.address, "--cpus", "1", "--config", config,
                    "--workdir", os.path.join(tmp, f"gov-{name}"),
                    "--logdir", os.path.join(tmp, f"gov-{name}-logs")], "governor"))
        except StartError as exc:
            self.stop()
            raise RuntimeError(str(exc)) from None

    def _spawn(self, name, args, kind=None):
        """Start ``rain <kind or name> <args>`` and wait until it is ready."""
        ready = os.path.join(self.tmp, f"{name}.ready")
        process = self._cluster.spawn(
            name, [sys.executable, "-m", "rain", kind or name, *args, "--ready-file", ready],
            ready, os.path.join(self.tmp, f"{name}.out"))
        self._cluster.wait_ready()
        return process

    def stop(self):
        self._cluster.kill_all()


def _parent_death_setting():
    """The measured code's own ``preexec_fn`` that ends a child with the process that
    started it (SIGTERM), or None in older versions measured through PYTHONPATH."""
    try:
        from rain.common.lifetime import die_with_parent
    except ImportError:
        return None
    return die_with_parent


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _on(where, args, inputs=(), outputs=()):
    from rain.client import Task
    from rain.client.program import _build_execute
    ins, outs, config, name = _build_execute(args, None, None, inputs, outputs, True, None)
    return Task(ins, outs, config=config, task_type="buildin/run", resources={where: 1},
                name=name)


#: Whether ``settle`` writes its scratch file (``--cold``: no).
WARM = True


def settle(tmp, size):
    """Before a measured copy: dirty pages written back (``sync``: the kernel would
    throttle writers meanwhile), then ``size`` bytes written and removed, so the next
    writer of that much data gets pages freed a moment before (see the module's doc)."""
    os.sync()
    if not WARM:
        return
    path = os.path.join(tmp, "warm-pages")
    block = bytes(4 * MiB)
    with open(path, "wb") as f:
        for _ in range(-(-size // len(block))):
            f.write(block)
    os.unlink(path)


def paired_raw(source, tmp):
    """A raw copy taken right before a measurement, both after ``sync``: dirty pages left
    by an earlier transfer (the kernel writes them back, and throttles writers meanwhile)
    must not slow one side of a pair down; both are settled alike."""
    size = os.path.getsize(source)
    settle(tmp, size)
    raw = raw_copy(source, os.path.join(tmp, "raw-copy"))
    settle(tmp, size)
    return raw


def plain_copy(source, tmp):
    """Seconds of a plain ``cp`` of ``source``, settled like the raw copy."""
    settle(tmp, os.path.getsize(source))
    target = os.path.join(tmp, "plain-copy")
    start = time.perf_counter()
    subprocess.run(["cp", source, target], check=True)
    elapsed = time.perf_counter() - start
    os.unlink(target)
    os.sync()
    return elapsed


def rain_transfer(source, size, tmp, repeat):
    """``repeat`` rounds of out, g2g, g2c and c2g, each after its own plain or raw copy: for
    each row a list of (seconds, copy seconds) pairs and the largest peak RSS growth of
    its rounds."""
    from rain.client import Client
    from rain.client.program import Input, Output
    cluster = RainCluster(tmp)
    result = {"out": [], "g2g": [], "g2c": [], "c2g": []}
    try:
        client = Client(*cluster.address.split(":"))
        me = psutil.Process()
        procs = {"server": psutil.Process(cluster.server.pid),
                 "sender": psutil.Process(cluster.governors[0].pid),
                 "receiver": psutil.Process(cluster.governors[1].pid), "client": me}
        for _ in range(repeat):
            with client.new_session() as s:
                produce = _on("a", f"cp {source} big", outputs=[Output("big")])
                produce.output.keep()
                plain = plain_copy(source, tmp)
                settle(tmp, size)
                rss = PeakRss(procs)
                start = time.perf_counter()
                s.submit()
                s.wait([produce])
                result["out"].append((time.perf_counter() - start, plain))
                _keep_peak(result, "out_rss", rss.stop())
                consume = _on("b", "test -s big",
                              inputs=[Input("big", dataobj=produce.output)])
                raw = paired_raw(source, tmp)
                rss = PeakRss(procs)
                start = time.perf_counter()
                s.submit()
                try:
                    s.wait([consume])
                    result["g2g"].append((time.perf_counter() - start, raw))
                except Exception as exc:
                    result["g2g_error"] = str(exc)[:200]
                _keep_peak(result, "g2g_rss", rss.stop())
                target = os.path.join(tmp, "fetched")
                raw = paired_raw(source, tmp)
                rss = PeakRss(procs)
                start = time.perf_counter()
                try:
                    if hasattr(produce.output, "fetch_to"):
                        produce.output.fetch_to(target)
                    else:
                        produce.output.fetch().write(target)
                    result["g2c"].append((time.perf_counter() - start, raw))
                    assert os.path.getsize(target) == size
                except Exception as exc:
                    result["g2c_error"] = str(exc)[:200]
                _keep_peak(result, "g2c_rss", rss.stop())
                if os.path.exists(target):
                    os.unlink(target)
            with client.new_session() as s:
                raw = paired_raw(source, tmp)
                rss = PeakRss(procs)
                start = time.perf_counter()
                try:
                    from rain.client import blob
                    with open(source, "rb") as f:
                        uploaded = blob(f, label="upload")
                        check = _on("a", "test -s up", inputs=[Input("up", dataobj=uploaded)])
                        s.submit()
                    s.wait([check])
                    result["c2g"].append((time.perf_counter() - start, raw))
                except Exception as exc:
                    result["c2g_error"] = str(exc)[:200]
                _keep_peak(result, "c2g_rss", rss.stop())
        client.close()
    finally:
        cluster.stop()
    return result


def _keep_peak(result, key, growth):
    """The largest growth of each process over the rounds."""
    old = result.get(key, {})
    result[key] = {name: max(value, old.get(name, value)) for name, value in growth.items()}


def summary(pairs, size):
    """``(median seconds, MB/s, median share of the paired raw copies' speed)``."""
    seconds = statistics.median(t for t, _ in pairs)
    share = statistics.median(raw / t for t, raw in pairs)
    return seconds, size / 1e6 / seconds, share


# -- Dask and Ray ------------------------------------------------------------------------------

def dask_transfer(size):
    from dask.distributed import Client, LocalCluster
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        workers = sorted(client.scheduler_info()["workers"])
        data = make_bytes(size)
        start = time.perf_counter()
        future = client.scatter(data, workers=[workers[0]])
        future.result()
        scatter = time.perf_counter() - start
        del data
        start = time.perf_counter()
        n = client.submit(len, future, workers=[workers[1]], pure=False).result()
        move = time.perf_counter() - start
        assert n == size
        return {"scatter_s": scatter, "g2g_s": move}


def ray_transfer(size):
    import ray
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    try:
        @ray.remote
        def length(data):
            return len(data)

        data = make_bytes(size)
        start = time.perf_counter()
        ref = ray.put(data)
        put = time.perf_counter() - start
        del data
        start = time.perf_counter()
        n = ray.get(length.remote(ref))
        move = time.perf_counter() - start
        assert n == size
        return {"put_s": put, "g2g_s": move}
    finally:
        ray.shutdown()


def make_bytes(size):
    block = os.urandom(MiB)
    return block * (size // MiB) + block[:size % MiB]


def _in_subprocess(system, size):
    """Run a peer system's measurement in a fresh process (its own cluster and memory)."""
    out = subprocess.run([sys.executable, __file__, "--peer", system, "--peer-size",
                          str(size)], capture_output=True, text=True, timeout=1200)
    if out.returncode != 0:
        return {"error": (out.stderr or out.stdout).strip().splitlines()[-1:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,4", help="GiB, comma separated")
    parser.add_argument("--systems", default="rain,dask,ray")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--repeat", type=int, default=3,
                        help="rounds per size (default 3; smoke 1)")
    parser.add_argument("--peer")
    parser.add_argument("--peer-size", type=int)
    parser.add_argument("--cold", action="store_true",
                        help="no scratch write before each copy (see the module's doc)")
    args = parser.parse_args()
    global WARM
    WARM = not args.cold
    if args.peer:
        result = (dask_transfer if args.peer == "dask" else ray_transfer)(args.peer_size)
        print(json.dumps(result))
        return
    sizes = [64 * MiB] if args.smoke else [int(float(s) * GiB) for s in args.sizes.split(",")]
    systems = ["rain"] if args.smoke else args.systems.split(",")
    if args.smoke:
        args.repeat = 1
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    import rain
    print(f"rain code: {os.path.dirname(rain.__file__)}; load average "
          f"{os.getloadavg()[0]:.2f}, {os.cpu_count()} cores; pages "
          f"{'warmed' if WARM else 'cold (--cold)'} before each copy")
    print(f"started {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}")
    for size in sizes:
        tmp = tempfile.mkdtemp(prefix="rain-h-")
        try:
            source = os.path.join(tmp, "source")
            make_source(source, size)
            raw = paired_raw(source, tmp)
            mb = size / 1e6
            print(f"\n{size / GiB:g} GiB: raw loopback copy {raw:.2f} s = {mb / raw:.0f} MB/s "
                  f"(load average {os.getloadavg()[0]:.1f}); {args.repeat} round(s), "
                  "medians, each row against the raw copy taken just before it")
            splices = []
            for _ in range(args.repeat):
                settle(tmp, size)
                splices.append(raw_copy(source, os.path.join(tmp, "splice-copy"),
                                        _receive_by_splice))
            splice = statistics.median(splices)
            print(f"  splice loopback copy {splice:.2f} s = {mb / splice:.0f} MB/s "
                  f"({100 * raw / splice:.0f}% of the raw copy above; median of "
                  f"{len(splices)}: {', '.join(f'{mb / t:.0f}' for t in splices)} MB/s)")
            if "rain" in systems:
                r = rain_transfer(source, size, tmp, args.repeat)
                for kind, label in (("out", "task output -> store"),
                                    ("g2g", "governor -> governor"),
                                    ("g2c", "governor -> client  "),
                                    ("c2g", "client -> governor  ")):
                    rss = ", ".join(f"{k} +{v:.0f} MB" for k, v in r[f"{kind}_rss"].items())
                    if r[kind]:
                        t, speed, share = summary(r[kind], size)
                        raws = ", ".join(f"{mb / raw:.0f}" for _, raw in r[kind])
                        copy = ("a plain cp", "plain cp") if kind == "out" else \
                            ("raw", "raw copies")
                        print(f"  rain {label} {t:.2f} s = {speed:.0f} MB/s "
                              f"({100 * share:.0f}% of {copy[0]}; {copy[1]} {raws} MB/s); "
                              f"peak RSS {rss}")
                    if f"{kind}_error" in r:
                        print(f"  rain {label} FAILED: {r[f'{kind}_error']}; peak RSS {rss}")
            if size <= GiB:
                for system in ("dask", "ray"):
                    if system in systems:
                        pairs = []
                        for _ in range(args.repeat):
                            raw = paired_raw(source, tmp)
                            r = _in_subprocess(system, size)
                            if "g2g_s" not in r:
                                print(f"  {system}: {r}")
                                break
                            pairs.append((r["g2g_s"], raw))
                        if pairs:
                            t, speed, share = summary(pairs, size)
                            print(f"  {system} worker -> worker {t:.2f} s = {speed:.0f} MB/s "
                                  f"({100 * share:.0f}% of raw); last run {r}")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

if __name__ == "__main__":
    main()
