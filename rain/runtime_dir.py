"""The per-user runtime directory where clusters leave their state files."""
import json
import os
import tempfile


def runtime_dir():
    """``$RAIN_RUNTIME_DIR``, else ``$XDG_RUNTIME_DIR/rain``, else ``<tmp>/rain-<uid>``;
    created user-only (0700)."""
    path = os.environ.get("RAIN_RUNTIME_DIR")
    if not path:
        xdg = os.environ.get("XDG_RUNTIME_DIR")
        path = os.path.join(xdg, "rain") if xdg else \
            os.path.join(tempfile.gettempdir(), f"rain-{os.getuid()}")
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


def read_records(directory):
    """Yield ``(path, dict)`` for every readable ``*.json`` record in ``directory``."""
    if not os.path.isdir(directory):
        return
    for name in sorted(os.listdir(directory)):
        if not name.endswith(".json"):
            continue
        path = os.path.join(directory, name)
        try:
            with open(path) as f:
                record = json.load(f)
        except (OSError, ValueError):
            continue
        if isinstance(record, dict):
            yield path, record


def clusters_dir():
    return os.path.join(runtime_dir(), "clusters")


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def remove_file(path):
    """Remove a record or token file if it is there (``None``: nothing to remove)."""
    if path:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
