"""What writing and reading each message of a one-task round trip costs, warm and right
after a pause, in each of the three wire formats of ``scenarios/bare_pipeline.py``.

An isolated round trip (scenario (d)) finds every process woken after 50 ms of sleep,
with cold caches: code then runs several times slower than when it runs again a moment
later. This measures that for the messages alone, in one process: for each message and
wire format, the median time of one encode or decode right after a pause (preceded by a
few microseconds of unrelated Python, as a woken process has run its event loop first)
and of the same call repeated at once.

    python benchmarks/cold_costs.py [--rounds 40] [--pause 0.05]
"""
import argparse
import os
import statistics
import sys
import time

import cbor2

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "scenarios"))
from bare_pipeline import WIRES  # noqa: E402

ROWS = [[[0, "py", cbor2.dumps({"fn": b"\x80" * 60}), [], [1], 1, None, "trivial", None]],
        [[1, None, None, 0, None, True, None]]]
UPDATE = [[[1, b"x"]], []]


def messages(wire):
    """(name, encode, decode) per message of a round trip, in the order they travel."""
    encoded = {
        "submit": wire.submit(1, ROWS),
        "assign": wire.assign([ROWS[1], ROWS[0]]),
        "update": wire.update(UPDATE),
        "fetch": wire.fetch(2, 1),
        "reply": wire.fetch_reply(2, b"x"),
    }
    return [
        ("submit (client -> server)", lambda: wire.submit(1, ROWS),
         lambda: wire.read_request(encoded["submit"])),
        ("assignment (server -> governor)", lambda: wire.assign([ROWS[1], ROWS[0]]),
         lambda: wire.read_assign(encoded["assign"])),
        ("update (governor -> server)", lambda: wire.update(UPDATE),
         lambda: wire.read_update(encoded["update"])),
        ("fetch (client -> server)", lambda: wire.fetch(2, 1),
         lambda: wire.read_request(encoded["fetch"])),
        ("fetch reply (server -> client)", lambda: wire.fetch_reply(2, b"x"),
         lambda: wire.read_reply(encoded["reply"])),
    ]


def unrelated_python():
    """What a woken process runs before it reaches the message: its loop, a callback."""
    table = {}
    for i in range(50):
        table[str(i)] = i
    return sorted(table)


def cold_and_warm(call, rounds, pause):
    cold, warm = [], []
    clock = time.perf_counter_ns
    for _ in range(rounds):
        time.sleep(pause)
        unrelated_python()
        t0 = clock()
        call()
        t1 = clock()
        call()
        t2 = clock()
        cold.append((t1 - t0) / 1000)
        warm.append((t2 - t1) / 1000)
    return statistics.median(cold), statistics.median(warm)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--pause", type=float, default=0.05)
    args = parser.parse_args()
    names = list(WIRES)
    print(f"median us per call over {args.rounds} pauses of {args.pause * 1e3:.0f} ms: "
          "cold (right after the pause) / warm (repeated at once)\n")
    print("| message | side | " + " | ".join(names) + " |")
    print("|---|---|" + "---:|" * len(names))
    table = {name: messages(WIRES[name]) for name in names}
    totals = {name: 0.0 for name in names}
    for i, (label, _, _) in enumerate(table[names[0]]):
        for side, index in (("encode", 1), ("decode", 2)):
            cells = []
            for name in names:
                cold, warm = cold_and_warm(table[name][i][index], args.rounds, args.pause)
                totals[name] += cold
                cells.append(f"{cold:.1f} / {warm:.1f}")
            print(f"| {label} | {side} | " + " | ".join(cells) + " |")
    print("| all ten, cold | | " + " | ".join(f"{totals[n]:.0f}" for n in names) + " |")


if __name__ == "__main__":
    main()
