"""How the size of each write into a new file changes the cost of receiving an object.

    python benchmarks/write_size.py                  # 1 GiB, 4 rounds
    python benchmarks/write_size.py --rounds 2 --sizes 2048,128

A 1 GiB file crosses a loopback TCP connection into a new file, as a receiving governor
takes in a chunked object: a thread sends it with ``sendfile``, the receiver reads 2 MiB
chunks whole (as a frame of a transfer arrives) and writes each chunk in writes of the
given size. The sizes take turns, round after round; each copy reports its MB/s and the
receiving thread's kernel time.

Before each copy a scratch file of the object's size is written and removed, and where the
kernel reports freed memory to a host (``/sys/module/page_reporting``, a virtual machine
with free page reporting) the script waits until that memory has been handed back: every
copy then starts from the same state, the one a long-running pipeline's writes meet (pages
freed a moment before are fast to reuse, and less so within a second here).
"""
import argparse
import os
import resource
import statistics
import tempfile
import time

import transfer     # benchmarks/transfer.py: its source file, loopback copy, scratch write

MiB = 1 << 20
CHUNK = 2 * MiB
REPORTED = "/sys/module/page_reporting/parameters/reported_kib"


def _reported_kib():
    try:
        with open(REPORTED) as f:
            return int(f.read())
    except OSError:
        return None


def settle(tmp, size):
    """Write and remove ``size`` bytes, then wait until the host took that memory back."""
    before = _reported_kib()
    transfer.settle(tmp, size)
    if before is None:
        return
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _reported_kib() - before < size * 0.9 / 1024:
        time.sleep(0.05)
    last = _reported_kib()
    while True:                 # until a pass of reporting is over
        time.sleep(0.3)
        now = _reported_kib()
        if now == last:
            return
        last = now


def copy(source, target, write_size):
    """Seconds of the copy and the receiving thread's kernel seconds."""

    def receive(conn, fd, size):
        view = memoryview(bytearray(CHUNK))
        before = resource.getrusage(resource.RUSAGE_THREAD).ru_stime
        got = 0
        while got < size:
            want, have = min(CHUNK, size - got), 0
            while have < want:
                n = conn.recv_into(view[have:want])
                if not n:
                    raise ConnectionError("the sender stopped early")
                have += n
            transfer.write_in_pieces(fd, view[:have], write_size)
            got += have
        return resource.getrusage(resource.RUSAGE_THREAD).ru_stime - before

    return transfer.loopback_copy(source, target, receive)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--sizes", default="2048,256,128,64", help="KiB per write")
    parser.add_argument("--gib", type=float, default=1.0)
    args = parser.parse_args()
    sizes = [int(s) * 1024 for s in args.sizes.split(",")]
    total = int(args.gib * (1 << 30))
    print(f"started {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}; load average "
          f"{os.getloadavg()[0]:.2f}; free page reporting: "
          f"{'yes' if _reported_kib() is not None else 'no'}")
    tmp = tempfile.mkdtemp(prefix="rain-ws-")
    try:
        source = os.path.join(tmp, "source")
        transfer.make_source(source, total)
        runs = {size: [] for size in sizes}
        for _ in range(args.rounds):
            for size in sizes:
                settle(tmp, total)
                runs[size].append(copy(source, os.path.join(tmp, "target"), size))
        print(f"\n{args.gib:g} GiB, 2 MiB chunks, {args.rounds} rounds (medians, min-max):")
        print("| write size | MB/s | receiver kernel s/GiB |")
        print("|---:|---:|---:|")
        for size, values in runs.items():
            speeds = [total / 1e6 / t for t, _ in values]
            kernel = [k / args.gib for _, k in values]
            print(f"| {size // 1024} KiB | {statistics.median(speeds):.0f} "
                  f"({min(speeds):.0f}-{max(speeds):.0f}) | {statistics.median(kernel):.2f} "
                  f"({min(kernel):.2f}-{max(kernel):.2f}) |")
    finally:
        for name in os.listdir(tmp):
            os.unlink(os.path.join(tmp, name))
        os.rmdir(tmp)


if __name__ == "__main__":
    main()
