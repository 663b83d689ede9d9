"""Checks of built-in tasks' configs at submit: a bad one is the submitter's error then,
not a failed task on some governor later (or, once retried, several)."""
import math
import os

from ..common.cbor import loads_or

PREFIX = "buildin/"


def _seconds(config):
    seconds = config.get("seconds") if isinstance(config, dict) else config
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) \
            or not math.isfinite(seconds) or seconds < 0:
        return f"Sleep: seconds must be a number >= 0, not {seconds!r}"
    return None


def _path(name, absolute=True):
    def check(config):
        path = config.get("path") if isinstance(config, dict) else None
        if not isinstance(path, str) or not path:
            return f"{name}: 'path' must be a non-empty string, not {path!r}"
        if absolute and not os.path.isabs(path):
            return f"{name}: path {path!r} is not absolute"
        return None
    return check


def _paths(config):
    paths = config.get("paths") if isinstance(config, dict) else None
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        return "MakeDirectory: 'paths' must be a list of strings"
    return None


def _run(config):
    if not isinstance(config, dict):
        return "Execute: the config must be a map"
    args = config.get("args")
    if not isinstance(args, list) or not args or not all(isinstance(a, str) for a in args):
        return "Execute: 'args' must be a non-empty list of strings"
    return None


#: task type -> check(config) returning an error message or None; (inputs, outputs)
#: counts the type needs (None: any)
CHECKS = {
    "buildin/concat": (None, (None, 1)),
    "buildin/sleep": (_seconds, (1, 1)),
    "buildin/open": (_path("Load"), (0, 1)),
    "buildin/open_dir": (_path("LoadDir"), (0, 1)),
    "buildin/export": (_path("Store"), (1, 0)),
    "buildin/make_directory": (_paths, (None, 1)),
    "buildin/slice_directory": (_path("SliceDirectory", absolute=False), (1, 1)),
    "buildin/run": (_run, (None, None)),
}


def check_builtin(task_type, config, input_count, output_count):
    """The error of a built-in task as submitted (type, CBOR config bytes, counts), or
    None when it is fine."""
    entry = CHECKS.get(task_type)
    if entry is None:
        known = ", ".join(sorted(CHECKS))
        return f"unknown built-in task type {task_type!r} (known: {known})"
    check, (inputs, outputs) = entry
    if inputs is not None and input_count != inputs:
        return f"{task_type} takes {inputs} input(s), got {input_count}"
    if outputs is not None and output_count != outputs:
        return f"{task_type} has {outputs} output(s), got {output_count}"
    if check is None:
        return None
    try:
        value = loads_or(config, None) if config else None
    except Exception as exc:
        return f"{task_type}: the config is not valid CBOR ({exc})"
    return check(value)
