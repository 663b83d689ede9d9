"""The governor's asyncio shell: the server connection, executors, files and peer fetches.

All state and decisions live in ``GovernorCore`` (``core.py``); this class decodes the
server's messages into core events, performs the effects the core asks for (it is the
core's comm, see ``comm.py``) and feeds the results back. Every core call runs on the loop
thread: blocking file work runs in worker threads that return plain values, never touch
objects or tasks, and the loop applies their results.
"""
import asyncio
import errno
import logging
import os
import shutil
import time

import capnp
import cbor2

from ..capnp import PROTOCOL_VERSION, TRAVERSAL_LIMIT, rain_capnp
from ..common import assign_columns, update_columns
from ..common.cbor import ROWS_MAX, dumps_or_empty, loads_or
from ..common.content_type import is_type_instance
from ..common.errors import RainException
from ..common.keepalive import set_keepalive
from ..common.framing import FrameProtocol, hello_future
from ..common.states import BLOB, DIRECTORY
from .builtins import BUILTINS, BUILTINS_NOW, BuiltinCall, TaskError
from .comm import GovernorComm
from .core import GovernorCore
from .executors import CallReturned, ExecutorError, ExecutorPool, send_now
from .logcap import LOG_MAX
from .monitoring import Monitor
from .protect import protect_flushes, remove_tree
from .store import MEMORY_LIMIT, PENDING, READY, Store
from .transfer import DataServer, PeerPool
from ..transfer.sinks import SpoolSink, finish_directory

logger = logging.getLogger(__name__)
R = rain_capnp

MONITORING_INTERVAL = 2.0
#: Calls an executor may hold at once (the running one included) while the local queue
#: is deep, and the count at which it is topped up again (see ``Governor.queue_behind``).
PIPELINE_DEPTH = 8
PIPELINE_REFILL = 4
#: Bytes from an executor or a peer up to this size stay in memory.
MEMORY_OUTPUT_MAX = 1 << 24


class Governor(GovernorComm):
    def __init__(self, *, cpus, resources=None, workdir, logdir, executors=None,
                 delete_timeout=5.0, token="", debug_mode=False, check_threads=False,
                 log_max=LOG_MAX, tls=None):
        self.workdir = workdir
        self.logdir = logdir
        self.tasks_dir = os.path.join(workdir, "tasks")
        os.makedirs(self.tasks_dir, exist_ok=True)
        self.store = Store(workdir)
        self.core = GovernorCore(self, self.store, cpus=cpus, resources=resources,
                                 delete_timeout=delete_timeout, debug_mode=debug_mode,
                                 check_threads=check_threads)
        self.executors = ExecutorPool(workdir, logdir, executors, log_max)
        self.log_max = log_max       # bytes per output file of an executor or program
        self.delete_timeout = delete_timeout
        self.token = token
        self.tls = tls            # rain.tls.Tls of the cluster (None: plain TCP)
        self.data_server = DataServer(self.store, token, tls)
        self.peers = PeerPool(token, tls)
        self.server = None
        self._hello = None
        self.closed = None
        self._monitor = Monitor(cpus)
        self._background = set()
        self.draining = False
        self._expire_timer = None
        self._hold_timer = None     # see GovernorCore.hold_updates
        self._pump_scheduled = False
        self._server_heard = 0.0    # loop time of the server's last frame
        self._server_timeout = None  # from its heartbeats: give it up after this silence
        self._server_watched = 0.0  # loop time of the last check of that
        # The loop, kept: asyncio.get_running_loop() costs a system call (getpid) each.
        self._loop = None

    @property
    def cpus(self):
        return self.core.cpus

    @property
    def governor_id(self):
        return self.core.governor_id

    @property
    def tasks(self):
        return self.core.tasks

    # ======================================================================================
    # Start-up

    async def start(self, server_host, server_port, listen_host="0.0.0.0", listen_port=0):
        """``listen_port``: the data port, or a list of ports tried in turn while taken."""
        loop = self._loop = self.store.loop = asyncio.get_running_loop()
        self.closed = loop.create_future()
        await self.executors.start()
        ports = list(listen_port) if isinstance(listen_port, (list, tuple)) else [listen_port]
        for i, port in enumerate(ports):
            try:
                data_host, data_port = await self.data_server.listen(listen_host, port)
                break
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE or i == len(ports) - 1:
                    raise
        self._hello = hello_future(loop)
        factory = lambda: FrameProtocol(self._on_server_frame,  # noqa: E731
                                        self._on_server_close)
        if self.tls is None:
            transport, self.server = await loop.create_connection(factory, server_host,
                                                                  server_port)
        else:
            transport, self.server = await self.tls.connect(loop, factory, server_host,
                                                            server_port)
        set_keepalive(transport.get_extra_info("socket"), 30.0)
        if data_host in ("0.0.0.0", "::", ""):
            data_host = transport.get_extra_info("sockname")[0]
        address = f"{data_host}:{data_port}"
        hello = R.Hello.new_message(protocolVersion=PROTOCOL_VERSION, token=self.token,
                                    role="governor", dataAddress=address, cpus=self.cpus)
        if self.core.resources:
            hello.resources = dumps_or_empty(self.core.resources)
        self.server.send(hello.to_bytes())
        ok, error, governor_id = await self._hello
        if not ok:
            raise RainException(f"server refused the governor: {error}")
        self.core.governor_id = governor_id
        self._schedule_monitoring()
        logger.info("registered at the server as %s with %d cpus", governor_id, self.cpus)
        return governor_id

    def _on_server_close(self, conn, exc):
        if self._hello is not None and not self._hello.done():
            self._hello.set_exception(RainException("server closed the connection"))
        if self.closed is not None and not self.closed.done():
            self.closed.set_result("server connection lost")

    def _on_server_frame(self, conn, frame):
        self._server_heard = self._loop.time()
        if not self._hello.done():
            with R.HelloReply.from_bytes(frame) as reply:
                self._hello.set_result((reply.ok, reply.error, reply.governorId))
            return
        with R.ServerToGovernor.from_bytes(frame,
                                           traversal_limit_in_words=TRAVERSAL_LIMIT) as msg:
            which = msg.which()
            if which == "assign":
                self._on_assign(msg.assign)
            elif which == "stopTasks":
                keys = self._read_keys(msg.stopTasks, "stopTasks")
                if keys:
                    self.core.stop(keys)
            elif which == "deleteObjects":
                keys = self._read_keys(msg.deleteObjects, "deleteObjects")
                if keys:
                    self.core.delete(keys)
            elif which == "infoRequest":
                self._send_info(msg.infoRequest)
            elif which == "heartbeat":
                self._on_heartbeat(msg.heartbeat)

    def _on_heartbeat(self, timeout):
        """Answer, and from the first one on watch for a server that falls silent for
        ``timeout`` seconds (stopped, frozen, or its host gone): then exit rather than
        keep running for nobody."""
        reply = R.GovernorToServer.new_message()
        reply.heartbeat = None
        self.server.send(reply.to_bytes())
        first = self._server_timeout is None
        self._server_timeout = timeout if timeout > 0 else None
        if first and self._server_timeout:
            self._server_watched = self._loop.time()
            set_keepalive(self.server.transport.get_extra_info("socket"), timeout)
            self._loop.call_later(timeout / 4, self._watch_server)

    def _watch_server(self):
        if self.closed is None or self.closed.done() or not self._server_timeout:
            return
        now = self._loop.time()
        late, self._server_watched = now - self._server_watched > self._server_timeout / 2, now
        silent = now - self._server_heard
        if silent > self._server_timeout and not late:   # (late: our frames wait unread)
            logger.error("no word from the server for %.1f s: exiting", silent)
            if self.server is not None and self.server.transport is not None:
                self.server.closed = True
                self.server.transport.abort()
            self.closed.set_result(f"server silent for {silent:.1f} s")
            return
        self._loop.call_later(self._server_timeout / 4, self._watch_server)

    # ======================================================================================
    # Messages from the server

    @staticmethod
    def _read_keys(data, what):
        try:
            return assign_columns.read_keys(data, what)
        except assign_columns.AssignmentError as exc:
            logger.error("malformed %s message from the server, ignored: %s", what, exc)
            return []

    def _on_assign(self, assign):
        try:
            rows = assign.rows
            if rows:
                objects, tasks = assign_columns.read_rows(rows)
            else:
                objects = assign_columns.read_objects(assign.objects)
                tasks = assign_columns.read_tasks(assign.tasks)
        except (assign_columns.AssignmentError, capnp.KjException) as exc:
            # Nothing of it is taken: the server that sent it speaks another format.
            logger.error("malformed assignment from the server, ignored: %s",
                         getattr(exc, "description", exc))
            return
        self.core.assign(objects, tasks)

    def _expire(self):
        """One timer for the whole delete list (not one per delete message): delete what
        is due, then sleep until the next deadline."""
        self._expire_timer = None
        self.store.expire()
        deadline = self.store.next_expiry()
        if deadline is not None:
            loop = self._loop
            self._expire_timer = loop.call_at(
                loop.time() + max(0.0, deadline - time.monotonic()) + 0.05, self._expire)

    def _send_info(self, request_id):
        msg = R.GovernorToServer.new_message()
        info = msg.init("info")
        info.requestId = request_id
        for name, keys in zip(("tasks", "objects", "objectsToDelete"),
                              self.core.info_lists()):
            ids = info.init(name, len(keys))
            for i, key in enumerate(keys):
                ids[i].session = key[0]
                ids[i].id = key[1]
        self.server.send(msg.to_bytes())

    # ======================================================================================
    # Effects the core asks for (GovernorComm)

    def fetch(self, obj):
        self._spawn(self._fetch(obj))

    def start_task(self, task):
        builtin_now = BUILTINS_NOW.get(task.task_type)
        if builtin_now is not None and self._run_builtin_now(task, builtin_now):
            return      # its "finished" entry says when it started
        self.core.started(task)
        if task.task_type not in BUILTINS:
            executor_type, _, method = task.task_type.partition("/")
            executor = self.executors.take_idle(executor_type) if method else None
            if executor is not None:
                if self._call_now(task, executor, method):
                    return
                self.executors.release(executor)
        task.runner = self._spawn(self._run(task))

    def queue_behind(self, task):
        if task.task_type in BUILTINS:
            return False
        executor_type, _, method = task.task_type.partition("/")
        if not method:
            return False
        executor = self.executors.queue_behind(executor_type, task, PIPELINE_DEPTH,
                                               PIPELINE_REFILL, self.core.pump_round)
        if executor is None:
            return False
        return self._call_now(task, executor, method)

    def stop_running(self, tasks):
        doomed = {}
        for task in tasks:
            if task.executor is not None:
                doomed[task.executor.id] = task.executor
            if task.runner is not None:
                task.runner.cancel()
        for executor in doomed.values():
            # Calls of other tasks in its queue (even the running one) go back to ours.
            executor.kill(return_all=True)

    def objects_deleted(self, keys):
        for executor in list(self.executors.all.values()):
            executor.drop_cached(keys)
        if self.store.to_delete and self._expire_timer is None:
            self._expire_timer = self._loop.call_later(self.delete_timeout + 0.05,
                                                       self._expire)

    def pump_soon(self):
        if not self._pump_scheduled:
            self._pump_scheduled = True
            self._loop.call_soon(self._pump_now)

    def _pump_now(self):
        self._pump_scheduled = False
        self.core.pump()

    def flush_soon(self):
        self._loop.call_soon(self.core.flush)

    def hold(self, delay):
        self._hold_timer = self._loop.call_later(delay, self._hold_expired)

    def _hold_expired(self):
        self._hold_timer = None
        self.core.hold_expired()

    def cancel_hold(self):
        if self._hold_timer is not None:
            self._hold_timer.cancel()
            self._hold_timer = None

    def calls_behind(self):
        waiting = 0
        for executor in self.executors.all.values():
            if len(executor.calls) > 1:
                waiting += len(executor.calls) - 1
        return waiting

    def connected(self):
        return self.server is not None

    def send_update(self, objects, tasks):
        msg = R.GovernorToServer.new_message()
        update = msg.init("update")
        if len(objects) + len(tasks) <= ROWS_MAX:
            update.rows = update_columns.pack_rows(objects, tasks)
        else:
            if objects:
                (update.objectIds, update.objectStates, update.objectSizes,
                 update.objectDetails) = update_columns.encode_objects(objects)
            if tasks:
                update.taskIds, update.taskStates, update.taskInfos = \
                    update_columns.encode_tasks(tasks)
        send_now(self.server, msg.to_bytes())

    # ======================================================================================
    # Inputs from peers

    def _spawn(self, coroutine):
        task = self._loop.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def _fetch(self, obj):
        """Pull ``obj`` from the first peer that has it, streamed: a small blob into
        memory, anything else chunk by chunk into a file (a directory's archive extracted
        off the loop). Any failure (peer gone, bad archive, full disk) goes to the core
        with its reason, and no partial file stays behind."""
        errors = []
        loop = self._loop
        path = os.path.join(self.tasks_dir, f"fetch-{obj.key[0]}-{obj.key[1]}")
        for address in obj.locations:
            sink = SpoolSink(path, MEMORY_LIMIT, write_back=protect_flushes())
            try:
                meta = await self.peers.fetch_into(address, obj.key, sink)
                if self._still_pending(obj) and meta["data_type"] == DIRECTORY:
                    await finish_directory(sink.file)
            except asyncio.CancelledError:
                sink.abort()
                raise
            except Exception as exc:        # TransferError, OSError, a garbled reply...
                sink.abort()
                errors.append(f"{address}: {_describe(exc)}")
                continue
            if not self._still_pending(obj):
                sink.abort()
                return
            try:
                if meta["content_type"]:
                    obj.content_type = meta["content_type"]
                if sink.in_memory:
                    self.store.set_bytes(obj, sink.memory.take())
                else:
                    size = sink.received if meta["data_type"] != DIRECTORY else None
                    placed = await loop.run_in_executor(
                        None, self.store.place_file, obj.key, path, size)
                    if not self._still_pending(obj):
                        self._spawn_cleanup(placed[0])
                        return
                    self.store.file_placed(obj, *placed)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                sink.abort()
                errors.append(f"{address}: storing it here failed: {_describe(exc)}")
                break       # the same bytes from another peer would fail the same way
            self.core.fetched(obj)
            return
        if self._still_pending(obj):
            self.core.fetch_failed(obj, "; ".join(errors) or "no location known")

    def _still_pending(self, obj):
        return obj.state == PENDING and self.store.objects.get(obj.key) is obj

    # ======================================================================================
    # Running

    def _run_builtin_now(self, task, builtin_now):
        """Run a built-in to its end in this turn if it needs no file work; False: it
        would (nothing was done). Called from ``core.pump``, which goes on with the freed
        CPUs, so this does not pump itself. A task that finishes here is reported by its
        "finished" entry alone (it has the start time): no "running" entry before it."""
        store_objects = self.store.objects
        try:
            inputs = [store_objects[key] for key in task.inputs]
            outputs = [store_objects[key] for key in task.outputs]
            config = loads_or(task.config, None)
        except Exception:
            return False        # the coroutine reports it
        call = BuiltinCall(self, task, config, inputs, outputs)
        try:
            results = builtin_now(call)
            if results is None or (len(results) == len(outputs) and
                                   not self._store_now(outputs, results)):
                for path in call.temp_dirs:
                    self._spawn_cleanup(path)
                return False
            if len(results) != len(outputs):
                raise TaskError(f"{task.task_type}: produced {len(results)} outputs, "
                                f"the task has {len(outputs)}")
            self.core.task_done(task, outputs, None)
        except Exception as exc:
            self.core.started(task)
            self._task_error(task, exc)
        self._end(task, (), call.temp_dirs, pump=False)
        return True

    def _call_now(self, task, executor, method):
        """Send the call in this loop turn when its body needs no file work; its result
        is then handled the moment it arrives (``_on_call_result``), without a coroutine
        and its extra loop turns. False: nothing was sent."""
        get = self.store.objects.__getitem__
        try:
            inputs = list(map(get, task.inputs))
            outputs = list(map(get, task.outputs))
        except KeyError:
            return False
        body = self._call_body_now(task, method, inputs, outputs, executor)
        if body is None:
            return False
        for obj in inputs:
            obj.refs += 1
        task.executor = task.ran_on = executor
        executor.send_call(
            body, task,
            lambda result, started: self._on_call_result(task, inputs, outputs, executor,
                                                         result, started),
            lambda exc: self._on_call_error(task, inputs, exc))
        return True

    def _on_call_result(self, task, inputs, outputs, executor, result, started):
        task.executor = None
        try:
            self._take_timing(task, result, started)
            results, info = self._executor_results(executor, result, inputs, outputs)
            if not self._store_now(outputs, results):
                task.runner = self._spawn(self._store_later(task, inputs, outputs, executor,
                                                            results, info))
                return
            self.executors.release(executor)
            self.core.task_done(task, outputs, info, flush_now=True)
        except Exception as exc:
            self._call_failed(executor, exc)
            self._task_error(task, exc)
        self._end(task, inputs, ())

    def _on_call_error(self, task, inputs, exc):
        task.executor = None
        self._task_error(task, exc)
        self._end(task, inputs, ())

    async def _store_later(self, task, inputs, outputs, executor, results, info):
        """The rest of ``_on_call_result`` when outputs need file work."""
        try:
            await self._store_results(outputs, results)
            self.executors.release(executor)
            self.core.task_done(task, outputs, info)
        except asyncio.CancelledError:
            self.executors.release(executor)     # its call was over
        except Exception as exc:
            self._call_failed(executor, exc)
            self._task_error(task, exc)
        finally:
            self._end(task, inputs, ())

    def _call_failed(self, executor, exc):
        if isinstance(exc, (TaskFailure, TaskError)):
            self.executors.release(executor)     # a failed task; the executor is fine
        elif isinstance(exc, ExecutorError):
            executor.kill(return_all=True)  # calls behind the bad result are not to blame

    async def _run(self, task):
        """Run a task that needs to wait on the way: a built-in, an executor to spawn,
        inputs to write to files."""
        temp_dirs = []
        held = ()
        try:
            inputs = [self.store.objects[key] for key in task.inputs]
            outputs = [self.store.objects[key] for key in task.outputs]
            for obj in inputs:
                obj.refs += 1
            held = inputs
            extra_info = await self._execute(task, inputs, outputs, temp_dirs)
            self.core.task_done(task, outputs, extra_info)
        except asyncio.CancelledError:
            pass
        except Exception as exc:
            # A failed task's files (a partial output on a full disk, say) are gone
            # before its failure is told: the next task finds the space free.
            dirs, temp_dirs = temp_dirs, []
            await self._remove_dirs(dirs)
            self._task_error(task, exc)
        finally:
            self._end(task, held, temp_dirs)

    async def _remove_dirs(self, paths):
        for path in paths:
            try:
                await self._loop.run_in_executor(None, remove_tree, path)
            except Exception:
                logger.exception("removing %s failed", path)

    def _task_error(self, task, exc):
        """A run ended with ``exc``: fail the task, or queue it again (CallReturned)."""
        core = self.core
        if isinstance(exc, CallReturned):
            core.task_returned(task)
        elif isinstance(exc, (TaskError, ExecutorError, TaskFailure)):
            extra = exc.info if isinstance(exc, TaskFailure) else None
            if isinstance(exc, ExecutorError) and getattr(task.ran_on, "dead", False):
                extra = {"crashed": "executor"}     # died under it: the server may retry
            core.task_failed(task, str(exc), extra)
        elif isinstance(exc, OSError):
            # File work of the governor (a full disk, say): the task's fault as far as
            # its author can tell, and the governor goes on.
            core.task_failed(task, f"Governor {core.governor_id}: storing the task's "
                                   f"results failed: {_describe(exc)}")
        else:
            if core.tasks.get(task.key) is task and not core.closing:
                logger.error("task %s failed inside the governor", task.key, exc_info=exc)
            core.task_failed(task, f"Governor error while running the task: {exc!r}")

    def _end(self, task, inputs, temp_dirs, pump=True):
        """After every run, however it ended: clean up, then the core passes on the
        CPUs (to the call now running in the same executor, if any)."""
        executor = task.ran_on
        successor = None
        if executor is not None and not executor.dead and executor.calls:
            successor = executor.calls[0].task
        for path in temp_dirs:
            self._spawn_cleanup(path)
        self.core.task_ended(task, inputs, successor, pump)

    def _spawn_cleanup(self, path):
        self._loop.run_in_executor(None, remove_tree, path)

    async def _execute(self, task, inputs, outputs, temp_dirs):
        task_type = task.task_type
        builtin = BUILTINS.get(task_type)
        if builtin is not None:
            try:
                config = loads_or(task.config, None)
            except Exception as exc:
                raise TaskError(f"{task_type}: invalid config: {exc}") from None
            call = BuiltinCall(self, task, config, inputs, outputs)
            try:
                results = await builtin(call)
                if len(results) != len(outputs):
                    raise TaskError(f"{task_type}: produced {len(results)} outputs, "
                                    f"the task has {len(outputs)}")
                await self._store_results(outputs, results)
            finally:
                temp_dirs.extend(call.temp_dirs)
            return None
        executor_type, _, method = task_type.partition("/")
        if task_type.startswith("buildin/"):
            raise TaskError(f"Unknown built-in task type {task_type!r}")
        if not method or not self.executors.knows(executor_type):
            raise TaskError(f"Unknown task type {task_type!r}: no executor "
                            f"{executor_type!r} is registered on governor "
                            f"{self.governor_id}")
        executor = await self.executors.acquire(executor_type)
        task.executor = task.ran_on = executor
        body = await self._call_body(task, method, inputs, outputs, executor)
        future = asyncio.get_running_loop().create_future()
        executor.send_call(body, task, lambda result, started: _settle(future, (result, started)),
                           lambda exc: _settle(future, exc, True))
        result, started = await future
        task.executor = None
        self._take_timing(task, result, started)
        try:
            results, info = self._executor_results(executor, result, inputs, outputs)
            await self._store_results(outputs, results)
        except Exception as exc:
            self._call_failed(executor, exc)
            raise
        self.executors.release(executor)
        return info

    @staticmethod
    def _take_timing(task, result, started):
        """The executor's own start time and duration when it reports them (with queued
        calls the governor cannot see when a call really started), else ours."""
        if isinstance(result, dict):
            start, duration = result.get("start_time"), result.get("duration")
            if isinstance(start, (int, float)) and isinstance(duration, (int, float)):
                task.start = start
                task.duration = duration
                return
        if started is not None:
            task.start = started
            task.duration = time.time() - started

    async def _call_body(self, task, method, inputs, outputs, executor):
        body = self._call_body_now(task, method, inputs, outputs, executor)
        if body is not None:
            return body
        loop = asyncio.get_running_loop()
        for obj in inputs:
            if obj.path is None and obj.key not in executor.cached and \
                    not (obj.data is not None and obj.data_type == BLOB):
                await loop.run_in_executor(None, self.store.materialize, obj)
        return self._call_body_now(task, method, inputs, outputs, executor, True)

    def _call_body_now(self, task, method, inputs, outputs, executor, materialize=False):
        """The body of the ``call`` message, or None when an input must first be written
        to a file (``materialize``: do it here, it was just done in a thread)."""
        input_specs = []
        for obj, label in zip(inputs, task.labels):
            entry = {"id": list(obj.key), "label": label or None,
                     "data_type": "dir" if obj.data_type == DIRECTORY else "blob",
                     "content_type": obj.content_type, "size": obj.size}
            if obj.key in executor.cached:
                entry["location"] = ["cached"]
            elif obj.data is not None and obj.data_type == BLOB:
                entry["location"] = ["memory", obj.data]
            else:
                path = obj.path
                if path is None:
                    if not materialize:
                        return None
                    path = self.store.materialize(obj)
                entry["location"] = ["path", path]
            input_specs.append(entry)
        output_specs = [{"id": list(obj.key), "label": obj.label or None,
                         "data_type": "dir" if obj.data_type == DIRECTORY else "blob",
                         "content_type": obj.declared_content_type}
                        for obj in outputs]
        return {
            "task": {"id": list(task.key), "type": task.task_type, "method": method,
                     "config": task.config or b"", "name": task.name or None,
                     "user": loads_or(task.user, {}),
                     "resources": {"cpus": task.cpus, **(task.resources or {})}},
            "inputs": input_specs,
            "outputs": output_specs,
        }

    def _executor_results(self, executor, result, inputs, outputs):
        """Check a ``result`` body: ``(results for _store_results, extra task info)``;
        raises TaskFailure, TaskError (the executor is fine) or ExecutorError."""
        if not isinstance(result, dict):
            raise ExecutorError("executor sent a malformed result")
        cached = result.get("cached")
        if cached:
            stale = []
            for key in cached:
                key = tuple(key)
                executor.cached.add(key)
                obj = self.store.objects.get(key)
                if obj is None or obj.delete_at is not None:
                    stale.append(key)     # deleted while the call ran: drop it right away
            if stale:
                executor.drop_cached(stale)
        info = result.get("info") or {}
        if not isinstance(info, dict):
            info = {}
        if not result.get("success"):
            raise TaskFailure(info.get("error") or "task failed in the executor", info)
        specs = result.get("outputs") or []
        if len(specs) != len(outputs):
            raise TaskError(f"executor returned {len(specs)} outputs, the task has "
                            f"{len(outputs)}")
        results = []
        by_key = {obj.key: obj for obj in inputs}
        for spec, obj in zip(specs, outputs):
            location = spec.get("location") or []
            content_type = spec.get("content_type")
            if content_type:
                declared = obj.declared_content_type
                if declared and not is_type_instance(content_type, declared):
                    raise TaskError(
                        f"Output {obj.label or obj.key[1]!r}: content type {content_type!r} "
                        f"is not a sub-type of the declared {declared!r}")
                obj.content_type = content_type
            if spec.get("info"):
                obj.info = spec["info"]
            kind = location[0] if location else None
            if kind == "memory":
                results.append(("bytes", location[1]))
            elif kind == "path":
                path = location[1]
                if not os.path.isabs(path):
                    path = os.path.join(executor.workdir, path)
                results.append(("path", path))
            elif kind == "other":
                source = by_key.get(tuple(location[1]))
                if source is None:
                    raise TaskError(f"executor referred to unknown object {location[1]}")
                results.append(("same", source))
            else:
                raise ExecutorError(f"executor sent an invalid output location {location!r}")
        return results, info

    def _store_now(self, outputs, results):
        """Store the outputs if that needs no file work (the common case of small blobs);
        False, having stored nothing, if ``_store_results`` must do it."""
        for obj, (kind, value) in zip(outputs, results):
            if obj.state == READY:
                continue
            if kind == "bytes":
                if obj.data_type == DIRECTORY or len(value) > (1 << 24):
                    return False
            elif kind != "same" or value.data is None:
                return False
        for obj, (kind, value) in zip(outputs, results):
            if obj.state == READY:
                continue
            if kind == "same":
                obj.content_type = obj.content_type or value.content_type
                value = value.data
            self.store.set_bytes(obj, value)
        return True

    async def _store_results(self, outputs, results):
        """Store outputs that need file work. A failure (a full disk, say) leaves no
        partial file behind and no output half-stored."""
        loop = self._loop
        store = self.store
        for obj, (kind, value) in zip(outputs, results):
            if obj.state != PENDING:
                continue
            if kind == "bytes":
                if obj.data_type == DIRECTORY:
                    raise TaskError(f"Output {obj.label!r} must be a directory")
                if len(value) > MEMORY_OUTPUT_MAX:
                    path = os.path.join(self.tasks_dir, f"out-{obj.key[0]}-{obj.key[1]}")
                    placed = await loop.run_in_executor(None, _write_to_store, store,
                                                        obj.key, path, value)
                    self._place(obj, placed)
                else:
                    store.set_bytes(obj, value)
            elif kind == "path":
                is_dir = os.path.isdir(value)
                if not os.path.lexists(value):
                    raise TaskError(f"Output file {value!r} does not exist")
                if is_dir != (obj.data_type == DIRECTORY):
                    expected = "a directory" if obj.data_type == DIRECTORY else "a file"
                    raise TaskError(f"Output {obj.label or obj.key[1]!r} must be {expected}")
                if not is_dir and os.path.getsize(value) <= (1 << 16):
                    with open(value, "rb") as f:
                        data = f.read()
                    os.unlink(value)
                    store.set_bytes(obj, data)
                else:
                    placed = await loop.run_in_executor(None, store.place_file, obj.key,
                                                        value)
                    self._place(obj, placed)
            elif kind == "same":
                if value.data is not None:
                    obj.content_type = obj.content_type or value.content_type
                    store.set_bytes(obj, value.data)
                else:
                    path = os.path.join(self.tasks_dir, f"copy-{obj.key[0]}-{obj.key[1]}")
                    placed = await loop.run_in_executor(None, _copy_to_store, store,
                                                        obj.key, value.path, path)
                    obj.content_type = obj.content_type or value.content_type
                    self._place(obj, placed)

    def _place(self, obj, placed):
        """A worker thread put an output's file in the store: the object takes it, unless
        it went away meanwhile (its task was stopped)."""
        if self.store.objects.get(obj.key) is obj and obj.state == PENDING:
            self.store.file_placed(obj, *placed)
        else:
            self._spawn_cleanup(placed[0])

    # ======================================================================================
    # Reporting

    def _schedule_monitoring(self):
        loop = self._loop

        def tick():
            if self.server is None or self.server.closed:
                return
            msg = R.GovernorToServer.new_message()
            msg.monitoring = cbor2.dumps(self._monitor.sample())
            self.server.send(msg.to_bytes())
            loop.call_later(MONITORING_INTERVAL, tick)

        loop.call_soon(tick)

    # ======================================================================================
    # Shutdown

    def drain(self):
        """Tell the server we are leaving; exit once the running tasks are done."""
        if self.draining or self.server is None or self.server.closed:
            return
        self.draining = True
        msg = R.GovernorToServer.new_message()
        msg.draining = None
        self.server.send(msg.to_bytes())
        self._check_drained()

    def _check_drained(self):
        if not self.draining:
            return
        if self.core.running_count():
            self._loop.call_later(0.05, self._check_drained)
        elif self.closed is not None and not self.closed.done():
            self.closed.set_result("drained")

    async def close(self):
        self.core.closing = True
        self.cancel_hold()
        if self._expire_timer is not None:
            self._expire_timer.cancel()
            self._expire_timer = None
        for task in list(self.core.tasks.values()):
            if task.runner is not None:
                task.runner.cancel()
        await self.executors.close()
        self.data_server.close()
        self.peers.close()
        if self.server is not None:
            self.server.close()
        await asyncio.get_running_loop().run_in_executor(None, self.store.clear)
        shutil.rmtree(self.tasks_dir, ignore_errors=True)


class TaskFailure(Exception):
    """A task failed in its executor; ``info`` carries the executor's TaskInfo fields."""

    def __init__(self, message, info):
        super().__init__(message)
        self.info = info


def _settle(future, value, error=False):
    if not future.done():
        if error:
            future.set_exception(value)
        else:
            future.set_result(value)


def _describe(exc):
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return f"no space left on device ({exc.filename or 'the work directory'})"
    return str(exc) or repr(exc)


# Worker-thread jobs: plain file work that returns ``Store.place_file``'s result and
# leaves no partial file when it fails. They never touch objects or tasks.

def _write_to_store(store, key, path, data):
    try:
        with open(path, "wb") as f:
            f.write(data)
        return store.place_file(key, path, len(data))
    except BaseException:
        remove_tree(path)
        raise


def _copy_to_store(store, key, source, path):
    try:
        if os.path.isdir(source):
            shutil.copytree(source, path, symlinks=True)
        else:
            shutil.copyfile(source, path)
        return store.place_file(key, path)
    except BaseException:
        remove_tree(path)
        raise
