"""Ready files: created (content ``ready\\n``) once a process is fully up.

A ready file named ``-`` is a line on standard output instead (``READY_PREFIX`` and a JSON
object): over ssh or srun it comes back to whoever started the process, with no file
system shared between the hosts.
"""
import json
import os
import sys

READY_PREFIX = "rain-ready "


def write_ready_file(path, **info):
    if path == "-":
        sys.stdout.write(READY_PREFIX + json.dumps(info, sort_keys=True) + "\n")
        sys.stdout.flush()
        return
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write("ready\n")
    os.replace(tmp, path)


def read_ready_lines(text):
    """The JSON objects of the ready lines in ``text`` (e.g. a log with other lines, and
    srun's ``N: `` labels before them)."""
    found = []
    for line in text.splitlines():
        _, sep, rest = line.partition(READY_PREFIX)
        if sep:
            try:
                found.append(json.loads(rest))
            except ValueError:
                continue
    return found
