"""``buildin/run``: an external program in a fresh working directory.

Config (CBOR map): ``args`` (list of str), ``in_paths`` (one ``{"path", "write"}`` per
task input; path ``"+in"`` feeds the input to stdin), ``out_paths`` (one path per output;
``"+out"`` captures stdout). Inputs appear as symlinks to the protected store files (or
as private copies with ``write``, and as read-only private copies where the store file
could not be made immutable, as for a governor not run as root), so a program can never
change a stored object. An output may have an input's path (it is
what is there when the program ends) or lie inside an input directory (which is then
given as a private copy). The program runs in its own process group
and is killed with it when the task is stopped. Its stderr, and its stdout unless that is
an output, are kept as capped logs (``logcap``): a chatty program cannot fill the disk.
"""
import asyncio
import os
import shutil
import signal
import tempfile

from .filecopy import copy_file
from .logcap import LOG_MAX, capped_pipe
from .protect import program_preexec
from .store import DIRECTORY

STDIN_PATH = "+in"
STDOUT_PATH = "+out"
STDERR_TAIL = 4000
#: Seconds to wait, after a program ended, for the rest of its output from its pipes.
LOG_DRAIN_TIMEOUT = 5.0


def _check_relpath(path, error):
    if not isinstance(path, str) or not path:
        raise error(f"Execute: invalid path {path!r}")
    if os.path.isabs(path):
        raise error(f"Execute: path {path!r} must be relative to the task directory")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise error(f"Execute: path {path!r} must stay inside the task directory")
    return os.path.join(*parts)


def _copy_tree(source, target):
    """A copy of a (read-only) stored directory that its owner may change."""
    shutil.copytree(source, target, symlinks=True, copy_function=copy_file)
    for root, dirs, files in os.walk(target):
        os.chmod(root, 0o755)
        for name in files:
            full = os.path.join(root, name)
            if not os.path.islink(full):
                os.chmod(full, 0o644)


def _copy_private(store, obj, target):
    if obj.data_type == DIRECTORY:
        source = store.materialize(obj)
        _copy_tree(source, target)
    elif obj.data is not None:
        with open(target, "wb") as f:
            f.write(obj.data)
    else:
        copy_file(obj.path, target)


def _make_read_only(path):
    """Give a private copy of an input the modes a link into the store shows."""
    for root, _dirs, files in os.walk(path, topdown=False):
        for name in files:
            full = os.path.join(root, name)
            if not os.path.islink(full):
                os.chmod(full, 0o444)
        os.chmod(root, 0o555)
    if not os.path.isdir(path):
        os.chmod(path, 0o444)


def _prepare(store, task_dir, entries):
    """Place the inputs in the task directory (runs in a worker thread); returns
    ``{relpath: store path}`` of the inputs placed as links."""
    links = {}
    for relpath, obj, write in entries:
        target = os.path.join(task_dir, relpath)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        source, safe_link = store.materialize_link(obj)
        if write or not safe_link:
            _copy_private(store, obj, target)
            if not write:
                _make_read_only(target)
        else:
            os.symlink(source, target)
            links[relpath] = source
    return links


def _take_unchanged_input(full, source, target):
    """An output at the path of an input link the program left as it was: the input's
    data, copied (the stored input stays as it is)."""
    if os.path.isdir(source):
        _copy_tree(source, target)
    else:
        copy_file(source, target)
    os.unlink(full)


async def run_program(call, error):
    config = call.config
    if not isinstance(config, dict):
        raise error("Execute: invalid config")
    args = config.get("args")
    if not isinstance(args, list) or not args or not all(isinstance(a, str) for a in args):
        raise error("Execute: 'args' must be a non-empty list of strings")
    in_paths = config.get("in_paths", [])
    out_paths = config.get("out_paths", [])
    if len(in_paths) != len(call.inputs) or len(out_paths) != len(call.outputs):
        raise error("Execute: in_paths/out_paths do not match the task's inputs/outputs")

    loop = asyncio.get_running_loop()
    base = tempfile.mkdtemp(prefix="run-", dir=call.governor.tasks_dir)
    call.temp_dirs.append(base)
    task_dir = os.path.join(base, "work")
    os.mkdir(task_dir)
    stdout_path = os.path.join(base, "stdout")
    stderr_path = os.path.join(base, "stderr")
    stdin_obj = None
    entries = []
    seen = set()
    for spec, obj in zip(in_paths, call.inputs):
        path = spec.get("path") if isinstance(spec, dict) else spec
        write = bool(spec.get("write")) if isinstance(spec, dict) else False
        if path == STDIN_PATH:
            if obj.data_type == DIRECTORY:
                raise error("Execute: a directory cannot be fed to stdin")
            stdin_obj = obj
            continue
        relpath = _check_relpath(path, error)
        if relpath in seen:
            raise error(f"Execute: input file name {relpath!r} is used twice")
        seen.add(relpath)
        entries.append((relpath, obj, write))
    outputs = []
    for path in out_paths:
        if path == STDOUT_PATH:
            outputs.append(None)
            continue
        relpath = _check_relpath(path, error)
        if relpath in outputs:
            raise error(f"Execute: output file name {relpath!r} is used twice")
        outputs.append(relpath)
    # An output at an input's path is what is there when the program ends (the input
    # itself if left alone); one inside an input directory needs a writable copy of it.
    for i, (relpath, obj, write) in enumerate(entries):
        if not write and obj.data_type == DIRECTORY and any(
                out is not None and out.startswith(relpath + os.sep) for out in outputs):
            entries[i] = (relpath, obj, True)
    links = await loop.run_in_executor(None, _prepare, call.store, task_dir, entries)
    stdin_file = None
    if stdin_obj is not None:
        stdin_path = await loop.run_in_executor(None, call.store.materialize, stdin_obj)
        stdin_file = open(stdin_path, "rb")
    # stderr, and stdout unless it is an output (data, kept whole), are capped logs.
    log_max = getattr(call.governor, "log_max", LOG_MAX)
    logs = []
    child_fds = []                   # ours to close once the child has its copies
    try:
        fd, log = await capped_pipe(stderr_path, log_max)
        child_fds.append(fd)
        logs.append(log)
        if None in outputs:
            child_fds.append(os.open(stdout_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                                     0o600))
        else:
            fd, log = await capped_pipe(stdout_path, log_max)
            child_fds.append(fd)
            logs.append(log)
        err, out = child_fds
        try:
            process = await asyncio.create_subprocess_exec(
                *args, cwd=task_dir, stdin=stdin_file or asyncio.subprocess.DEVNULL,
                stdout=out, stderr=err, start_new_session=True,
                preexec_fn=program_preexec)
        except FileNotFoundError:
            raise error(f"Execute: program {args[0]!r} not found") from None
        except PermissionError:
            raise error(f"Execute: program {args[0]!r} is not executable") from None
        except OSError as exc:
            raise error(f"Execute: cannot start {args[0]!r}: {exc}") from None
        finally:
            if stdin_file is not None:
                stdin_file.close()
            stdin_file = None
            while child_fds:
                os.close(child_fds.pop())
        try:
            code = await process.wait()
        except asyncio.CancelledError:
            _kill_group(process)
            raise
        finally:
            # Children the program left behind in its group die with it.
            _kill_group(process)
        # What it wrote last is read before its stderr is.
        await asyncio.wait([log.done for log in logs], timeout=LOG_DRAIN_TIMEOUT)
    finally:
        if stdin_file is not None:
            stdin_file.close()
        for fd in child_fds:
            os.close(fd)
        for log in logs:
            log.close()
    if code != 0:
        # From memory: on a full disk the file lacks what the program said last.
        stderr = logs[0].recent(STDERR_TAIL).strip()
        message = f"Program {args[0]!r} exited with code {code}"
        if code < 0:
            message = f"Program {args[0]!r} was killed by signal {-code}"
        if stderr:
            message += f"\nstderr:\n{stderr}"
        raise error(message)
    results = []
    for relpath, obj in zip(outputs, call.outputs):
        if relpath is None:
            target = os.path.join(base, "stdout.result")
            os.rename(stdout_path, target)
            results.append(("path", target))
            continue
        full = os.path.join(task_dir, relpath)
        target = os.path.join(base, f"out-{len(results)}")
        source = links.get(relpath)
        if source is not None and os.path.islink(full) and os.readlink(full) == source:
            await loop.run_in_executor(None, _take_unchanged_input, full, source, target)
            results.append(("path", target))
            continue
        if obj.data_type == DIRECTORY:
            if not os.path.isdir(full) or os.path.islink(full):
                raise error(f"Execute: output directory {relpath!r} was not created "
                            f"by {args[0]!r}")
            # Moving a directory to another parent rewrites its "..": its owner needs
            # write permission on it (a read-only input copy, or one the program made).
            os.chmod(full, os.stat(full).st_mode | 0o200)
        elif not os.path.isfile(full) or os.path.islink(full):
            raise error(f"Execute: output file {relpath!r} was not created by "
                        f"{args[0]!r}")
        os.rename(full, target)
        results.append(("path", target))
    return results


def _kill_group(process):
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
