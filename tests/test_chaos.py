"""Chaos: a 10,000-task pipeline (Python tasks, external programs, built-ins, data passing
between governors) on 4 governors, while a driver kills (SIGKILL) or freezes (SIGSTOP) a
random governor every few seconds and starts a replacement. The result must be right and
the event log must show the recoveries. Seeded, bounded in time and in disruptions; every
process it started is gone at the end (the ``make_cluster`` fixture checks)."""
import contextlib
import hashlib
import os
import random
import signal
import sys
import threading

import cloudpickle
import psutil
import pytest
import requests

from rain.client import remote, tasks
from rain.common.update_columns import INLINE_DATA_MAX

cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(900)]

WIDTH = 2500                 # chains; 4 tasks each, plus the groups and the total
GROUP = 100
SIZE = INLINE_DATA_MAX + 904  # every intermediate lives on governors only


def seed_bytes(i):
    return (f"{i:08d}|" * (SIZE // 9 + 1)).encode()[:SIZE]


@remote
def seed(ctx, i):
    return seed_bytes(i)


def digest_bytes(data):
    return hashlib.sha256(data).hexdigest().encode() * (SIZE // 64 + 1)


@remote
def digest(ctx, data):
    return digest_bytes(data.get_bytes())


@remote
def total(ctx, *groups):
    h = hashlib.sha256()
    for group in groups:
        h.update(group.get_bytes())
    return h.hexdigest()


def expected_total():
    second = [seed_bytes(i).translate(bytes.maketrans(b"0123456789", b"abcdefghij"))
              if i % 4 == 0 else seed_bytes(i) for i in range(WIDTH)]
    digests = [digest_bytes(second[i] + second[(i + 1) % WIDTH]) for i in range(WIDTH)]
    h = hashlib.sha256()
    for start in range(0, WIDTH, GROUP):
        h.update(b"".join(digests[start:start + GROUP]))
    return h.hexdigest()


def build():
    first = [seed(i) for i in range(WIDTH)]
    second = [tasks.Execute(["tr", "0-9", "a-j"], stdin=first[i], stdout=True)
              if i % 4 == 0 else tasks.Sleep(first[i], 0) for i in range(WIDTH)]
    third = [tasks.Concat((second[i], second[(i + 1) % WIDTH])) for i in range(WIDTH)]
    fourth = [digest(obj) for obj in third]
    groups = [tasks.Concat(fourth[start:start + GROUP]) for start in range(0, WIDTH, GROUP)]
    result = total(*groups)
    result.output.keep()
    count = 4 * WIDTH + len(groups) + 1
    return result, count


class Driver(threading.Thread):
    """Every ``interval`` s: SIGKILL or SIGSTOP a random live governor and start another;
    at most ``limit`` times, then idle until stopped. Frozen governors are thawed (they then exit by themselves,
    their server having given them up) one round later and at the end."""

    def __init__(self, cluster, seed, interval=4.0, limit=6):
        super().__init__(daemon=True)
        self.cluster = cluster
        self.rng = random.Random(seed)
        self.interval = interval
        self.limit = limit
        self.stop = threading.Event()
        self.actions = []
        self.frozen = []
        self.error = None

    def run(self):
        try:
            while len(self.actions) < self.limit and not self.stop.wait(self.interval):
                self.thaw()
                live = [p for p in self.cluster.governor_processes if p.poll() is None
                        and p not in self.frozen]
                victim = self.rng.choice(live)
                if self.rng.random() < 0.5:
                    # The governor and its executors (they run in sessions of their own).
                    # A governor thawed after its server gave it up may end on its own
                    # meanwhile: then it is no disruption of ours.
                    try:
                        children = psutil.Process(victim.pid).children(recursive=True)
                        for child in children:
                            with contextlib.suppress(psutil.NoSuchProcess):
                                child.kill()
                        os.killpg(victim.pid, signal.SIGKILL)
                    except (psutil.NoSuchProcess, ProcessLookupError):
                        continue
                    self.actions.append(("kill", victim.pid))
                else:
                    try:
                        os.kill(victim.pid, signal.SIGSTOP)
                    except ProcessLookupError:
                        continue
                    self.frozen.append(victim)
                    self.actions.append(("freeze", victim.pid))
                self.cluster.add_governor(1)
        except Exception as exc:      # reported by the test
            self.error = exc
        # Governors die with the thread that started them (see rain_cluster): keep the
        # replacements up until the test is done with the cluster.
        self.stop.wait()

    def thaw(self):
        for process in self.frozen:
            try:
                os.kill(process.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        self.frozen = []


def recovery_events(cluster):
    events = {}
    for kind in ("GovernorLost", "ObjectsRecomputed", "TaskRetried"):
        reply = requests.post(f"http://127.0.0.1:{cluster.http_port}/events",
                              json={"event_types": [{"value": kind, "mode": "="}]},
                              headers=cluster.http_headers, timeout=30)
        reply.raise_for_status()
        events[kind] = [item["event"] for item in reply.json()]
    return events


@pytest.mark.parametrize("seed_value", [19])
def test_pipeline_survives_killed_and_frozen_governors(make_cluster, seed_value):
    cluster = make_cluster([1, 1, 1, 1], server_args=["--heartbeat-timeout", "2"])
    client = cluster.client()
    driver = Driver(cluster, seed_value)
    try:
        with client.new_session() as s:
            result, count = build()
            assert count >= 10_000
            s.submit()
            driver.start()
            value = result.output.fetch().get_str()
            done = list(driver.actions)
            events = recovery_events(cluster)
    finally:
        driver.stop.set()
        if driver.is_alive():
            driver.join(60)
        driver.thaw()
    assert driver.error is None, driver.error
    assert value == expected_total()
    assert len(done) >= 2, f"the run ended before the chaos: {done}"
    reasons = [e["reason"] for e in events["GovernorLost"]]
    print("disruptions:", done, "losses:", reasons,
          "recomputes:", len(events["ObjectsRecomputed"]),
          "retries:", len(events["TaskRetried"]))
    # Every disruption is a loss (the last one may still be under way); a governor
    # starved of CPU on a loaded machine may be given up too.
    assert len(reasons) >= len(done) - 1, (done, reasons)
    if any(action == "freeze" for action, _ in driver.actions):
        assert any("silent" in e["reason"] for e in events["GovernorLost"])
    assert events["ObjectsRecomputed"], "no loss needed a recompute"
