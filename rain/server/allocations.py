"""Batch allocations (``rain alloc``'s jobs) as the server knows them: pure, no I/O.

An autoscaler reports each of its jobs as it sees them in the batch scheduler
(``POST /api/allocations``). ``Reports`` turns a report into the events of the transition
(``AllocationSubmitted``, ``AllocationStarted``, ``AllocationEnded``), so the event log holds
the allocations' history next to the governors they brought, and a repeated report adds
nothing. ``AllocationTable`` folds those events into what the dashboard and
``GET /api/allocations`` show; the governors of an allocation are those that registered
from its nodes' addresses while it ran.
"""
from .errors import RequestError

STATES = ("queued", "running", "ended")
EVENT_TYPES = {"queued": "AllocationSubmitted", "running": "AllocationStarted",
               "ended": "AllocationEnded"}
_FIELDS = {"allocation", "scheduler", "state", "nodes", "addresses", "reason"}
_MAX_TEXT = 200
_MAX_NODES = 10000


def _text(report, key, default=None):
    value = report.get(key, default)
    if not isinstance(value, str) or not value or len(value) > _MAX_TEXT:
        raise RequestError(f"'{key}' must be a non-empty string of at most {_MAX_TEXT} "
                           "characters")
    return value


def _names(report, key):
    value = report.get(key, [])
    if not isinstance(value, list) or len(value) > _MAX_NODES or not all(
            isinstance(v, str) and v and len(v) <= _MAX_TEXT for v in value):
        raise RequestError(f"'{key}' must be a list of host names or addresses")
    return value


def parse_report(report):
    """A report as sent by an autoscaler, checked: ``{"allocation": job id, "scheduler":
    "slurm", "state": "queued|running|ended", "nodes": [...], "addresses": [...],
    "reason": "..."}``."""
    if not isinstance(report, dict):
        raise RequestError("an allocation report must be a JSON object")
    unknown = set(report) - _FIELDS
    if unknown:
        raise RequestError(f"unknown field(s): {', '.join(sorted(unknown))}")
    state = report.get("state")
    if state not in STATES:
        raise RequestError(f"'state' must be one of {', '.join(STATES)}")
    reason = report.get("reason", "")
    if not isinstance(reason, str):
        raise RequestError("'reason' must be a string")
    return {"allocation": _text(report, "allocation"),
            "scheduler": _text(report, "scheduler", "batch"), "state": state,
            "nodes": _names(report, "nodes"), "addresses": _names(report, "addresses"),
            "reason": reason[:_MAX_TEXT]}


class Reports:
    """The last state reported per allocation: what a new report changes."""

    def __init__(self):
        self.states = {}            # (scheduler, allocation) -> state

    def events(self, report):
        """The events a checked report (``parse_report``) means, in order; none when it
        repeats the known state. A job first seen running was submitted too; an ended one
        cannot come back."""
        key = (report["scheduler"], report["allocation"])
        known = self.states.get(key)
        state = report["state"]
        if known == state or known == "ended":
            return []
        base = {"allocation": report["allocation"], "scheduler": report["scheduler"]}
        result = []
        if known is None:
            result.append({"type": "AllocationSubmitted", **base})
        if state == "running":
            result.append({"type": "AllocationStarted", **base, "nodes": report["nodes"],
                           "addresses": report["addresses"]})
        elif state == "ended":
            result.append({"type": "AllocationEnded", **base, "reason": report["reason"]})
        self.states[key] = state
        return result


class Allocation:
    __slots__ = ("id", "scheduler", "state", "nodes", "addresses", "submitted", "started",
                 "ended", "reason", "governors")

    def __init__(self, allocation_id, scheduler, submitted):
        self.id = allocation_id
        self.scheduler = scheduler
        self.state = "queued"
        self.nodes = []
        self.addresses = []
        self.submitted = submitted
        self.started = None
        self.ended = None
        self.reason = ""
        self.governors = []

    @property
    def since(self):
        return {"queued": self.submitted, "running": self.started,
                "ended": self.ended}[self.state]

    def to_json(self):
        return {"allocation": self.id, "scheduler": self.scheduler, "state": self.state,
                "nodes": self.nodes, "addresses": self.addresses, "since": self.since,
                "submitted": self.submitted, "started": self.started, "ended": self.ended,
                "reason": self.reason, "governors": self.governors}


def governor_host(governor_id):
    """The address part of a governor id (``10.0.0.2:41234`` -> ``10.0.0.2``)."""
    return str(governor_id).rsplit(":", 1)[0]


class AllocationTable:
    """Allocations folded from their events; ``governors``: {id: added time} of the run
    model, to find those that came up before the start was reported."""

    def __init__(self):
        self.items = {}             # (scheduler, id) -> Allocation, in submission order
        self.version = 0

    def handlers(self):
        return {"AllocationSubmitted": self.submitted, "AllocationStarted": self.started,
                "AllocationEnded": self.ended}

    def _get(self, event, when):
        key = (event.get("scheduler") or "batch", str(event["allocation"]))
        allocation = self.items.get(key)
        if allocation is None:
            allocation = self.items[key] = Allocation(key[1], key[0], when)
        self.version += 1
        return allocation

    def submitted(self, event, when, governors=None):
        self._get(event, when)

    def started(self, event, when, governors=None):
        allocation = self._get(event, when)
        allocation.state = "running"
        allocation.started = when
        allocation.nodes = [str(n) for n in event.get("nodes") or ()]
        allocation.addresses = [str(a) for a in event.get("addresses") or ()]
        taken = {g for a in self.items.values() for g in a.governors}
        for gid, added in (governors or {}).items():
            if gid not in taken and self._matches(allocation, gid) and (
                    added is None or allocation.submitted is None
                    or added >= allocation.submitted):
                allocation.governors.append(gid)

    def ended(self, event, when, governors=None):
        allocation = self._get(event, when)
        allocation.state = "ended"
        allocation.ended = when
        allocation.reason = str(event.get("reason") or "")

    def governor_new(self, governor_id):
        for allocation in self.items.values():
            if allocation.state == "running" and self._matches(allocation, governor_id):
                allocation.governors.append(governor_id)
                self.version += 1
                return

    @staticmethod
    def _matches(allocation, governor_id):
        host = governor_host(governor_id)
        return host in allocation.addresses or host in allocation.nodes

    def counts(self):
        result = dict.fromkeys(STATES, 0)
        for allocation in self.items.values():
            result[allocation.state] += 1
        return result

    def to_json(self):
        return [a.to_json() for a in self.items.values()]
