"""Executor processes: spawned once, registered over a unix socket, reused task after task.

The protocol (CBOR frames) is documented in ``docs/executor-protocol.md``; an executor that
registers with Rain 0.4's protocol ``cbor-1`` is spoken to in its shapes (``cbor1``), while
the governor sees the same call and result bodies for every executor. An executor runs
one task at a time. One that announces ``pipeline`` may be sent further calls before its
result is back (``Executor.calls`` lists them in order, the first is running); that saves
the governor a round trip, a wake-up and a write per task when many small tasks wait.
Stopping a task kills its executor (SIGKILL), and a fresh one is spawned on demand, so a
stopped session never leaves work running; calls queued behind it are handed back.
"""
import asyncio
import collections
import logging
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time

import cbor2

from ..common.framing import MAX_FRAME_SIZE, FrameProtocol, encode_frame
from . import cbor1
from .logcap import LOG_MAX, capped_pipe, tail
from .protect import program_preexec
from .workdir import remove_abandoned

logger = logging.getLogger(__name__)

PROTOCOL = "rain-executor/1"
SOCKET_NAME = "executors.sock"
#: Bytes of a Unix socket's path, at most.
SOCKET_PATH_MAX = 107
SOCKET_DIR_PREFIX = "rain-exec-"
#: Longest work directory that can hold the executors' socket (``socket_fits``):
#: "/rain-exec-XXXXXXXX/executors.sock" follows the directory.
SOCKET_DIR_MAX = SOCKET_PATH_MAX - len(f"/{SOCKET_DIR_PREFIX}12345678/") - len(SOCKET_NAME)
REGISTER_TIMEOUT = 60.0
OUTPUT_TAIL = 2000
#: Largest frame taken on the executors' socket before a register (which is small).
REGISTER_MAX_SIZE = 2**16
#: Seconds the output of a lost executor is still read (what it wrote last, after its
#: socket closed) before its pipes are closed.
LOG_LINGER = 10.0


#: Where the executors' socket goes when neither the work directory nor the temp dir
#: leaves room for its path (a long ``TMPDIR``, as batch systems and test runners set).
SHORT_TEMP_DIRS = ("/tmp", "/var/tmp", "/dev/shm")


def socket_fits(directory, prefix=SOCKET_DIR_PREFIX):
    """Whether ``<directory>/<prefix>XXXXXXXX/executors.sock`` (a ``mkdtemp`` name) is
    short enough for a Unix socket's path."""
    path = os.path.join(os.path.abspath(directory), prefix + "XXXXXXXX", SOCKET_NAME)
    return len(path) <= SOCKET_PATH_MAX


def fallback_socket_dir():
    """A directory for the executors' socket, named after this process
    (``rain-exec-<pid>-XXXXXXXX``), in the temp dir or, where that path is too long for
    a socket, in the first of ``SHORT_TEMP_DIRS`` that takes one: a governor killed before
    it could remove its own is cleaned up by the next one that starts."""
    prefix = f"{SOCKET_DIR_PREFIX}{os.getpid()}-"
    candidates = list(dict.fromkeys((os.path.abspath(tempfile.gettempdir()),
                                     *SHORT_TEMP_DIRS)))
    for tmp in candidates:
        if socket_fits(tmp, prefix) and os.access(tmp, os.W_OK | os.X_OK):
            remove_abandoned(tmp, SOCKET_DIR_PREFIX)
            return tempfile.mkdtemp(prefix=prefix, dir=tmp)
    raise OSError(f"no directory for the executors' socket: its path must be at most "
                  f"{SOCKET_PATH_MAX} bytes and none of {', '.join(candidates)} is writable "
                  f"and short enough (give a shorter --workdir or TMPDIR)")


class ExecutorError(Exception):
    """The executor failed (died, could not start, broke the protocol)."""


class CallReturned(Exception):
    """A queued call never started because its executor was lost: run the task again."""


class PendingCall:
    """A call sent to an executor, waiting for its result."""

    __slots__ = ("task", "on_result", "on_error", "started")

    def __init__(self, task, on_result, on_error, started):
        self.task = task
        self.on_result = on_result  # (result body, start time)
        self.on_error = on_error    # (ExecutorError or CallReturned)
        self.started = started      # when the executor got to it, as far as we know


def encode_message(kind, body):
    return cbor2.dumps([kind, body])


def send_now(conn, payload):
    """Write a frame at once instead of at the end of the loop turn (``conn.send``),
    saving the turn when nothing else will be sent there."""
    if conn.closed or conn.transport is None:
        return
    conn.flush()        # frames queued earlier go first
    conn.transport.writelines((encode_frame(payload), payload))


class Executor:
    def __init__(self, executor_id, executor_type, pool):
        self.id = executor_id
        self.type = executor_type
        self.pool = pool
        self.process = None
        self.conn = None
        self.cached = set()        # object keys the executor keeps
        self.registered = None     # future
        self.calls = collections.deque()   # PendingCall, in the order sent
        self.pipeline = False      # announced in register: may queue calls
        self.protocol = None       # PROTOCOL or cbor1.PROTOCOL (Rain 0.4's), from register
        self.listed_idle = False
        self.fill_round = None     # the governor's pump round that last queued a call here
        self.workdir = None
        self.output_path = None     # its stdout
        self.error_path = None      # its stderr
        self.logs = ()              # the CappedLogs writing those
        self.dead = False

    def tail(self):
        """The ends of the executor's stdout and stderr, each labelled (empty: none)."""
        parts = []
        for name, path in (("stdout", self.output_path), ("stderr", self.error_path)):
            text = tail(path, OUTPUT_TAIL).strip() if path else ""
            if text:
                parts.append(f"{name}:\n{text}")
        return "\n".join(parts)

    def on_message(self, kind, body):
        if kind == "register":
            if not self.registered.done():
                protocol = body.get("protocol")
                if protocol not in (PROTOCOL, cbor1.PROTOCOL):
                    self.registered.set_exception(ExecutorError(
                        f"executor speaks protocol {protocol!r}, expected {PROTOCOL!r} "
                        f"or {cbor1.PROTOCOL!r}"))
                else:
                    self.protocol = protocol
                    self.pipeline = protocol == PROTOCOL and body.get("pipeline") is True
                    self.registered.set_result(True)
        elif kind == "result":
            calls = self.calls
            if self.protocol == cbor1.PROTOCOL:
                try:
                    body = cbor1.from_result(body)
                except cbor1.ProtocolError as exc:
                    raise ExecutorError(f"executor {self.id}: {exc}") from None
            if calls:
                call = calls.popleft()
                if calls:
                    calls[0].started = time.time()
                call.on_result(body, call.started)
        else:
            raise ExecutorError(f"unknown message {kind!r} from executor {self.id}")

    def on_lost(self, return_all=False):
        """The executor is gone: its running call fails with the death message (unless
        ``return_all``: we killed it to stop another task), queued calls are returned."""
        if self.dead:
            return
        self.dead = True
        self.pool.forget(self)
        for log in self.logs:
            asyncio.get_running_loop().call_later(LOG_LINGER, log.close)
        error = ExecutorError(self._death_message())
        if self.registered is not None and not self.registered.done():
            self.registered.set_exception(error)
        calls, self.calls = self.calls, collections.deque()
        for i, call in enumerate(calls):
            call.on_error(error if i == 0 and not return_all else CallReturned())

    def _death_message(self):
        code = self.process.returncode if self.process else None
        tail = self.tail().strip()
        message = f"Executor {self.type!r} (id {self.id}) terminated"
        if code is not None:
            message += f" with exit code {code}"
        if tail:
            message += f"; the end of its output:\n{tail}"
        return message

    def send_call(self, body, task, on_result, on_error):
        """Send a call. ``on_result(body, start)`` gets its result, ``start`` being when
        the call was sent or the result before it came back; ``on_error(exc)`` is called
        instead if the executor is lost first. Raises CallReturned if it is already."""
        if self.dead:
            raise CallReturned()
        if self.protocol == cbor1.PROTOCOL:
            body = cbor1.to_call(body)
        first = not self.calls
        self.calls.append(PendingCall(task, on_result, on_error,
                                      time.time() if first else None))
        if first:
            send_now(self.conn, encode_message("call", body))
        else:
            self.conn.send(encode_message("call", body))   # leaves with the others

    def accepts_behind(self, task, depth, refill_at, fill_round):
        """Whether ``task`` may queue behind the calls sent so far.

        The queue is topped up to ``depth`` calls once it is down to ``refill_at`` (so
        calls leave several to a write), and it holds the CPUs of one task, so only tasks
        needing the same CPUs and no named resources share it.
        """
        calls = self.calls
        count = len(calls)
        if not calls or count >= depth or not self.pipeline or self.dead or \
                (count > refill_at and self.fill_round != fill_round):
            return False
        cpus = task.cpus
        for call in calls:
            other = call.task
            if other.cpus != cpus or other.resources:
                return False
        return True

    def drop_cached(self, keys):
        keys = [k for k in keys if k in self.cached]
        if keys and self.conn is not None and not self.conn.closed:
            for key in keys:
                self.cached.discard(key)
            self.conn.send(encode_message("drop_cached", {"objects": [list(k) for k in keys]}))

    def kill(self, return_all=False):
        """SIGKILL the executor's process group; see ``on_lost`` for its calls."""
        if self.process is not None and self.process.returncode is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                try:
                    self.process.kill()
                except ProcessLookupError:
                    pass
        if self.conn is not None:
            self.conn.close()
        self.on_lost(return_all)


class ExecutorPool:
    """Executors by type; idle ones are reused before new ones are spawned."""

    def __init__(self, workdir, logdir, commands=None, log_max=LOG_MAX):
        self.workdir = workdir
        self.logdir = logdir
        self.log_max = log_max      # bytes per executor log file (see ``logcap``)
        self.commands = {"py": [sys.executable, "-m", "rain.executor"]}
        for name, command in (commands or {}).items():
            self.commands[name] = shlex.split(command) if isinstance(command, str) \
                else list(command)
        self.idle = collections.defaultdict(list)
        self.all = {}
        self._next_id = 1
        self.socket_path = None
        self.server = None
        self._socket_dir = None

    async def start(self):
        # In the work directory, which whoever started the governor removes even after a
        # SIGKILL; unless its path is too long for a Unix socket (~107 bytes).
        if self.workdir and socket_fits(self.workdir):
            os.makedirs(self.workdir, exist_ok=True)
            self._socket_dir = tempfile.mkdtemp(prefix=SOCKET_DIR_PREFIX, dir=self.workdir)
        else:
            self._socket_dir = fallback_socket_dir()
        self.socket_path = os.path.join(self._socket_dir, SOCKET_NAME)
        self.server = await asyncio.get_running_loop().create_unix_server(
            lambda: FrameProtocol(self._on_frame, self._on_close,
                                  max_frame_size=REGISTER_MAX_SIZE), self.socket_path)

    def knows(self, executor_type):
        return executor_type in self.commands

    # -- connections ------------------------------------------------------------------------
    def _on_frame(self, conn, frame):
        message = cbor2.loads(frame)
        if not isinstance(message, list) or len(message) != 2 or \
                not isinstance(message[1], dict):
            raise ExecutorError("malformed executor message")
        kind, body = message
        executor = conn.state
        if executor is None:
            if kind != "register":
                raise ExecutorError("executor must register first")
            executor = self.all.get(body.get("executor_id"))
            if executor is None or executor.conn is not None:
                raise ExecutorError(f"unknown executor id {body.get('executor_id')!r}")
            conn.state = executor
            executor.conn = conn
            conn.max_frame_size = MAX_FRAME_SIZE
        executor.on_message(kind, body)

    def _on_close(self, conn, exc):
        if conn.state is not None:
            conn.state.on_lost()

    # -- lifecycle --------------------------------------------------------------------------
    async def acquire(self, executor_type):
        return self.take_idle(executor_type) or await self._spawn(executor_type)

    def take_idle(self, executor_type):
        """An idle executor of this type, or None (then ``acquire`` spawns one)."""
        idle = self.idle.get(executor_type)
        while idle:
            executor = idle.pop()
            executor.listed_idle = False
            if not executor.dead and not executor.calls:
                return executor
        return None

    def queue_behind(self, executor_type, task, depth, refill_at, fill_round):
        """A busy executor that may take ``task`` in its queue (the shortest), or None."""
        best = None
        for executor in self.all.values():
            if executor.type == executor_type and \
                    executor.accepts_behind(task, depth, refill_at, fill_round) and \
                    (best is None or len(executor.calls) < len(best.calls)):
                best = executor
        if best is not None:
            best.fill_round = fill_round
        return best

    def release(self, executor):
        """Back to the idle list once no call of it is pending."""
        if not executor.dead and not executor.calls and not executor.listed_idle:
            executor.listed_idle = True
            self.idle[executor.type].append(executor)

    def forget(self, executor):
        self.all.pop(executor.id, None)
        idle = self.idle.get(executor.type)
        if idle and executor in idle:
            idle.remove(executor)
        executor.listed_idle = False

    async def _spawn(self, executor_type):
        command = self.commands.get(executor_type)
        if command is None:
            raise ExecutorError(f"no executor {executor_type!r} is registered "
                                "(see the governor's --config)")
        executor_id = self._next_id
        self._next_id += 1
        executor = Executor(executor_id, executor_type, self)
        executor.workdir = os.path.join(self.workdir, "executors", str(executor_id))
        os.makedirs(executor.workdir, exist_ok=True)
        log_name = os.path.join(self.logdir, f"executor-{executor_type}-{executor_id}")
        executor.output_path = log_name + ".out"
        executor.error_path = log_name + ".err"
        loop = asyncio.get_running_loop()
        executor.registered = loop.create_future()
        self.all[executor_id] = executor
        env = dict(os.environ)
        env["RAIN_EXECUTOR_SOCKET"] = self.socket_path
        env["RAIN_EXECUTOR_ID"] = str(executor_id)
        env["RAIN_EXECUTOR_TYPE"] = executor_type
        out, out_log = await capped_pipe(executor.output_path, self.log_max)
        try:
            err, err_log = await capped_pipe(executor.error_path, self.log_max)
        except BaseException:
            os.close(out)
            out_log.close()
            raise
        executor.logs = (out_log, err_log)
        try:
            executor.process = await asyncio.create_subprocess_exec(
                *command, cwd=executor.workdir, env=env, stdin=asyncio.subprocess.DEVNULL,
                stdout=out, stderr=err, start_new_session=True,
                preexec_fn=program_preexec)
        except OSError as exc:
            self.all.pop(executor_id, None)
            for log in executor.logs:
                log.close()
            raise ExecutorError(f"cannot start executor {executor_type!r} "
                                f"({shlex.join(command)}): {exc}") from None
        finally:
            os.close(out)
            os.close(err)
        watcher = loop.create_task(executor.process.wait())
        watcher.add_done_callback(lambda _: loop.call_later(0.05, executor.on_lost))
        try:
            await asyncio.wait_for(asyncio.shield(executor.registered), REGISTER_TIMEOUT)
        except asyncio.TimeoutError:
            executor.kill()
            raise ExecutorError(f"executor {executor_type!r} did not register within "
                                f"{REGISTER_TIMEOUT:.0f} s; the end of its output:\n"
                                f"{executor.tail()}")
        except ExecutorError:
            executor.kill()
            raise
        return executor

    async def close(self):
        for executor in list(self.all.values()):
            executor.kill()
            for log in executor.logs:
                log.close()
        if self.server is not None:
            self.server.close()
        if self._socket_dir:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
