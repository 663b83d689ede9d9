"""The governor: receives assignments, gathers inputs, runs tasks, reports in batches.

One asyncio loop. Tasks whose inputs are all here start as soon as enough CPUs are free;
missing inputs are pulled straight from the peer governors that hold them. Updates to the
server are collected during a loop turn and leave as one message.
"""
import asyncio
import collections
import logging
import os
import shutil
import time

import capnp
import cbor2

from ..capnp import PROTOCOL_VERSION, TRAVERSAL_LIMIT, rain_capnp
from ..common import assign_columns, update_columns
from ..common.update_columns import INLINE_DATA_MAX
from ..common.cbor import ROWS_MAX, dumps_or_empty, loads_or
from ..common.content_type import is_type_instance
from ..common.errors import RainException
from ..common.framing import FrameProtocol
from .builtins import BUILTINS, BUILTINS_NOW, BuiltinCall, TaskError
from .executors import CallReturned, ExecutorError, ExecutorPool, send_now
from .monitoring import Monitor
from .store import BLOB, DIRECTORY, PENDING, READY, Store
from ..common.timestamps import utc_isoformat
from .transfer import DataServer, PeerPool, fetch_into_store

logger = logging.getLogger(__name__)
R = rain_capnp

RUNNING_STATE, FINISHED_STATE, FAILED_STATE = 3, 4, 5
OBJ_FINISHED, OBJ_REMOVED = 1, 2
MONITORING_INTERVAL = 2.0
#: Update batching while the local queue is deep (see ``Governor._hold_updates``).
HOLD_QUEUE = 4
HOLD_BATCH = 16
HOLD_MAX = 0.005
#: How long news of started tasks alone may wait: most tasks finish sooner, and then one
#: update says both (see ``Governor._hold_updates``).
HOLD_STARTED = 0.002
#: Calls an executor may hold at once (the running one included) while the local queue
#: is deep, and the count at which it is topped up again (see ``Governor._queue_behind``).
PIPELINE_DEPTH = 8
PIPELINE_REFILL = 4


class GovTask:
    __slots__ = ("key", "task_type", "config", "inputs", "labels", "outputs", "cpus",
                 "resources", "name", "user", "state", "runner", "executor", "start",
                 "duration", "holds_cpus", "ran_on")

    def __init__(self, key, task_type, config, inputs, labels, outputs, cpus, resources,
                 name, user):
        self.key = key
        self.task_type = task_type
        self.config = config
        self.inputs = inputs        # [key]
        self.labels = labels
        self.outputs = outputs      # [key]
        self.cpus = cpus
        self.resources = resources
        self.name = name
        self.user = user
        self.state = "waiting"
        self.runner = None
        self.executor = None
        self.start = None           # unix time; the executor's when it reports one
        self.duration = None        # the executor's measure, when it reports one
        self.holds_cpus = False     # False while queued behind another call (see _pump)
        self.ran_on = None          # the executor of its call, until the run has ended


class Governor:
    def __init__(self, *, cpus, resources=None, workdir, logdir, executors=None,
                 delete_timeout=5.0, token=""):
        self.cpus = cpus
        self.free_cpus = cpus
        self.resources = dict(resources or {})
        self.free_resources = dict(self.resources)
        self.workdir = workdir
        self.logdir = logdir
        self.tasks_dir = os.path.join(workdir, "tasks")
        os.makedirs(self.tasks_dir, exist_ok=True)
        self.store = Store(workdir)
        self.executors = ExecutorPool(workdir, logdir, executors)
        self.delete_timeout = delete_timeout
        self.token = token
        self.data_server = DataServer(self.store, token)
        self.peers = PeerPool(token)
        self.tasks = {}
        self.queue = collections.deque()
        self.server = None
        self.governor_id = None
        self._task_updates = []
        self._object_updates = []
        self._flush_scheduled = False
        self._hello = None
        self.closed = None
        self._monitor = Monitor()
        self._background = set()
        self.draining = False
        self._expire_timer = None
        self._hold_timer = None     # see _hold_updates
        self._urgent = False
        self._pump_round = 0        # counts _pump calls (see ExecutorPool.queue_behind)
        self._closing = False
        # The loop, kept: asyncio.get_running_loop() costs a system call (getpid) each.
        self._loop = None

    # ======================================================================================
    # Start-up

    async def start(self, server_host, server_port, listen_host="0.0.0.0", listen_port=0):
        loop = self._loop = asyncio.get_running_loop()
        self.closed = loop.create_future()
        await self.executors.start()
        data_host, data_port = await self.data_server.listen(listen_host, listen_port)
        self._hello = loop.create_future()
        transport, self.server = await loop.create_connection(
            lambda: FrameProtocol(self._on_server_frame, self._on_server_close),
            server_host, server_port)
        if data_host in ("0.0.0.0", "::", ""):
            data_host = transport.get_extra_info("sockname")[0]
        address = f"{data_host}:{data_port}"
        hello = R.Hello.new_message(protocolVersion=PROTOCOL_VERSION, token=self.token,
                                    role="governor", dataAddress=address, cpus=self.cpus)
        if self.resources:
            hello.resources = dumps_or_empty(self.resources)
        self.server.send(hello.to_bytes())
        ok, error, governor_id = await self._hello
        if not ok:
            raise RainException(f"server refused the governor: {error}")
        self.governor_id = governor_id
        self._schedule_monitoring()
        logger.info("registered at the server as %s with %d cpus", governor_id, self.cpus)
        return governor_id

    def _on_server_close(self, conn, exc):
        if self._hello is not None and not self._hello.done():
            self._hello.set_exception(RainException("server closed the connection"))
        if self.closed is not None and not self.closed.done():
            self.closed.set_result("server connection lost")

    def _on_server_frame(self, conn, frame):
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
                    self._on_stop(keys)
            elif which == "deleteObjects":
                keys = self._read_keys(msg.deleteObjects, "deleteObjects")
                if keys:
                    self._on_delete(keys)
            elif which == "infoRequest":
                self._send_info(msg.infoRequest)

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
        store = self.store
        arrived = store.add_assigned(objects)
        if arrived:
            self._object_updates.extend((obj.key, OBJ_FINISHED, obj.size,
                                         obj.content_type or "", b"") for obj in arrived)
            self._schedule_flush()
        queue = self.queue
        known = self.tasks
        for row in tasks:
            key = row[0]
            if key in known:
                continue
            task = known[key] = GovTask(*row)
            missing = []
            for input_key in task.inputs:
                obj = store.objects.get(input_key)
                if obj is None:
                    self._fail_task(task, f"Input object {input_key} was not sent to the "
                                          "governor")
                    break
                if obj.state != READY:
                    missing.append(obj)
            else:
                if missing:
                    self._spawn(self._gather_inputs(task, missing))
                else:
                    task.state = "queued"
                    queue.append(task)
        self._pump()        # once for the whole assignment

    def _on_stop(self, keys):
        doomed = {}
        for key in keys:
            task = self.tasks.pop(key, None)
            if task is None:
                continue
            if task.state == "running":
                if task.executor is not None:
                    doomed[task.executor.id] = task.executor
                if task.runner is not None:
                    task.runner.cancel()
            task.state = "stopped"
        for executor in doomed.values():
            # Calls of other tasks in its queue (even the running one) go back to ours.
            executor.kill(return_all=True)
        self._pump()

    def _on_delete(self, keys):
        self.store.schedule_deletes(keys, self.delete_timeout)
        for executor in list(self.executors.all.values()):
            executor.drop_cached(keys)
        if self.store.to_delete and self._expire_timer is None:
            self._expire_timer = asyncio.get_running_loop().call_later(
                self.delete_timeout + 0.05, self._expire)

    def _expire(self):
        """One timer for the whole delete list (not one per delete message): delete what
        is due, then sleep until the next deadline."""
        self._expire_timer = None
        self.store.expire()
        deadline = self.store.next_expiry()
        if deadline is not None:
            loop = asyncio.get_running_loop()
            self._expire_timer = loop.call_at(
                loop.time() + max(0.0, deadline - time.monotonic()) + 0.05, self._expire)

    def _send_info(self, request_id):
        msg = R.GovernorToServer.new_message()
        info = msg.init("info")
        info.requestId = request_id
        task_keys = [key for key, task in self.tasks.items() if task.state != "stopped"]
        ready = [key for key, obj in self.store.objects.items() if obj.state == READY]
        deleting = list(self.store.to_delete)
        for name, keys in (("tasks", task_keys), ("objects", ready),
                           ("objectsToDelete", deleting)):
            ids = info.init(name, len(keys))
            for i, key in enumerate(keys):
                ids[i].session = key[0]
                ids[i].id = key[1]
        self.server.send(msg.to_bytes())

    # ======================================================================================
    # Inputs

    def _spawn(self, coroutine):
        task = self._loop.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def _gather_inputs(self, task, missing):
        try:
            for obj in missing:
                if obj.state == READY:
                    continue
                if obj.fetching is None and obj.locations:
                    obj.fetching = self._spawn(self._fetch(obj))
                await self.store.wait_ready(obj)
        except Exception as exc:
            if self.tasks.get(task.key) is task:
                self._fail_task(task, f"Cannot obtain input {obj.key}: {exc}")
            return
        if self.tasks.get(task.key) is task and task.state == "waiting":
            self._enqueue(task)

    async def _fetch(self, obj):
        if await fetch_into_store(self.peers, self.store, obj, self.tasks_dir):
            self._object_updates.append((obj.key, OBJ_FINISHED, obj.size,
                                         obj.content_type or "", b""))
            self._schedule_flush()

    # ======================================================================================
    # Running

    def _enqueue(self, task):
        task.state = "queued"
        self.queue.append(task)
        self._pump()

    def _fits(self, task):
        if task.cpus > self.free_cpus:
            return False
        if task.resources:
            for name, amount in task.resources.items():
                if self.free_resources.get(name, 0) < amount:
                    return False
        return True

    def _pump(self):
        if not self.queue or self._closing:
            return
        skipped = []
        queue = self.queue
        self._pump_round += 1
        deep = len(queue) > max(HOLD_QUEUE, 2 * self.cpus)
        while queue:
            task = queue.popleft()
            if task.state != "queued":
                continue
            if self._fits(task):
                self._start(task)
            elif deep and self._queue_behind(task):
                pass
            else:
                skipped.append(task)
                if self.free_cpus <= 0:
                    break
        if skipped:
            queue.extendleft(reversed(skipped))

    def _start(self, task):
        task.state = "running"
        task.holds_cpus = True
        self.free_cpus -= task.cpus
        if task.resources:
            for name, amount in task.resources.items():
                self.free_resources[name] = self.free_resources.get(name, 0) - amount
        task.start = time.time()
        builtin_now = BUILTINS_NOW.get(task.task_type)
        if builtin_now is not None and self._run_builtin_now(task, builtin_now):
            return      # its "finished" entry says when it started
        self._task_updates.append((task.key, RUNNING_STATE, None))
        self._note_started()
        if task.task_type not in BUILTINS:
            executor_type, _, method = task.task_type.partition("/")
            executor = self.executors.take_idle(executor_type) if method else None
            if executor is not None:
                if self._call_now(task, executor, method):
                    return
                self.executors.release(executor)
        task.runner = self._spawn(self._run(task))

    def _queue_behind(self, task):
        """Send ``task`` to an executor busy with tasks like it, behind them.

        Only while many tasks wait here: the executor then goes from one call to the
        next without waiting for us, and calls and results travel several to a write.
        A task queued this way holds no CPUs; it takes over those of the call ahead of it
        when that one is done (``_end``), so the queue occupies one task's CPUs.
        """
        if task.resources or task.task_type in BUILTINS:
            return False
        executor_type, _, method = task.task_type.partition("/")
        if not method:
            return False
        executor = self.executors.queue_behind(executor_type, task, PIPELINE_DEPTH,
                                               PIPELINE_REFILL, self._pump_round)
        if executor is None:
            return False
        task.state = "running"
        task.holds_cpus = False
        if not self._call_now(task, executor, method):
            task.state = "queued"
            return False
        return True

    def _run_builtin_now(self, task, builtin_now):
        """Run a built-in to its end in this turn if it needs no file work; False: it
        would (nothing was done). Called from ``_pump``, which goes on with the freed
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
            self._task_done(task, outputs, None)
        except Exception as exc:
            self._task_updates.append((task.key, RUNNING_STATE, None))
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
            self._task_done(task, outputs, info, flush_now=True)
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
            self._task_done(task, outputs, info)
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

    def _finish_resources(self, task):
        self.free_cpus += task.cpus
        if task.resources:
            for name, amount in task.resources.items():
                self.free_resources[name] = self.free_resources.get(name, 0) + amount

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
            self._task_done(task, outputs, extra_info)
        except asyncio.CancelledError:
            pass
        except Exception as exc:
            self._task_error(task, exc)
        finally:
            self._end(task, held, temp_dirs)

    def _task_done(self, task, outputs, extra_info, flush_now=False):
        """Report a finished task; ``flush_now``: in this turn, not at its end (saves a
        turn where results come one per read anyway; deep queues still batch)."""
        if self.tasks.get(task.key) is not task:
            return
        info = self._base_info(task)
        if extra_info:
            info.update(extra_info)
        for obj in outputs:
            data = obj.data
            self._object_updates.append((obj.key, OBJ_FINISHED, obj.size,
                                         obj.content_type or "",
                                         dumps_or_empty(obj.info),
                                         data if data is not None and obj.data_type == BLOB
                                         and len(data) <= INLINE_DATA_MAX else None))
        self._task_updates.append((task.key, FINISHED_STATE, info))
        self.tasks.pop(task.key, None)
        if flush_now:
            self._flush()
        else:
            self._schedule_flush()

    def _task_error(self, task, exc):
        """A run ended with ``exc``: fail the task, or queue it again (CallReturned)."""
        if self.tasks.get(task.key) is not task or self._closing:
            return      # (closing: the server learns from the lost connection)
        if isinstance(exc, CallReturned):
            if task.state == "running":
                task.state = "queued"
                task.start = None
                self.queue.appendleft(task)
        elif isinstance(exc, (TaskError, ExecutorError, TaskFailure)):
            extra = exc.info if isinstance(exc, TaskFailure) else None
            self._fail_task(task, str(exc), extra)
        else:
            logger.error("task %s failed inside the governor", task.key, exc_info=exc)
            self._fail_task(task, f"Governor error while running the task: {exc!r}")

    def _end(self, task, inputs, temp_dirs, pump=True):
        """After every run, however it ended: unpin the inputs, pass on the CPUs."""
        for obj in inputs:
            obj.refs -= 1
        if task.state == "running":
            task.state = "done"
        executor, task.ran_on, task.executor = task.ran_on, None, None
        if task.holds_cpus:
            task.holds_cpus = False
            self._pass_cpus(task, executor)
        for path in temp_dirs:
            self._spawn_cleanup(path)
        if pump:
            self._pump()

    def _pass_cpus(self, task, executor):
        """``task`` is over: its CPUs go to the next call queued in its executor (now
        running there), else back to the free pool."""
        calls = executor.calls if executor is not None and not executor.dead else None
        if calls:
            successor = calls[0].task
            if not successor.holds_cpus and successor.state == "running":
                successor.holds_cpus = True
                self._task_updates.append((successor.key, RUNNING_STATE, None))
                self._schedule_flush()
                return
        self._finish_resources(task)

    def _base_info(self, task):
        duration = task.duration
        return {
            "start_time": utc_isoformat(task.start),
            "duration": duration if duration is not None else time.time() - task.start,
            "governor": self.governor_id,
        }

    def _fail_task(self, task, message, extra=None):
        info = self._base_info(task) if task.start else {"governor": self.governor_id}
        if extra:
            info.update(extra)
        info["error"] = message
        self.tasks.pop(task.key, None)
        task.state = "failed"
        for key in task.outputs:
            obj = self.store.objects.get(key)
            if obj is not None and obj.state == PENDING:
                self.store.delete_now(key)
        self._task_updates.append((task.key, FAILED_STATE, info))
        self._urgent = True
        self._schedule_flush()

    def _spawn_cleanup(self, path):
        from .protect import remove_tree
        asyncio.get_running_loop().run_in_executor(None, remove_tree, path)

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
        loop = asyncio.get_running_loop()
        for obj, (kind, value) in zip(outputs, results):
            if obj.state == READY:
                continue
            if kind == "bytes":
                if obj.data_type == DIRECTORY:
                    raise TaskError(f"Output {obj.label!r} must be a directory")
                if len(value) > (1 << 24):
                    path = os.path.join(self.tasks_dir, f"out-{obj.key[0]}-{obj.key[1]}")
                    await loop.run_in_executor(None, _write_file, path, value)
                    await loop.run_in_executor(None, self.store.set_file, obj, path,
                                               len(value))
                else:
                    self.store.set_bytes(obj, value)
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
                    self.store.set_bytes(obj, data)
                else:
                    await loop.run_in_executor(None, self.store.set_file, obj, value)
            elif kind == "same":
                if value.data is not None:
                    obj.content_type = obj.content_type or value.content_type
                    self.store.set_bytes(obj, value.data)
                else:
                    path = os.path.join(self.tasks_dir, f"copy-{obj.key[0]}-{obj.key[1]}")
                    await loop.run_in_executor(None, _copy_any, value.path, path)
                    obj.content_type = obj.content_type or value.content_type
                    await loop.run_in_executor(None, self.store.set_file, obj, path)

    # ======================================================================================
    # Reporting

    def _note_started(self):
        """A "running" update was added: if it is the only news, arm the timer that sends
        it unless the task's end comes first, without a loop turn for ``_flush``."""
        if self._flush_scheduled or self._hold_timer is not None or self._urgent or \
                self._object_updates or self.server is None or \
                any(u[1] != RUNNING_STATE for u in self._task_updates):
            self._schedule_flush()
            return
        self._hold_timer = self._loop.call_later(
            HOLD_MAX if self.queue else HOLD_STARTED, self._flush_held)

    def _schedule_flush(self):
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _hold_updates(self):
        """Whether this turn's updates may wait for the next ones.

        With many tiny tasks the server keeps a deep prefetch queue here, and one update
        message per finished task (one send, one wake-up of the server, one scheduling
        round and assignment back) cost more than the tasks. While at least
        ``HOLD_QUEUE`` tasks wait here for a CPU, the server has nothing urgent to do
        with our news, so updates are sent per ``HOLD_BATCH`` (or after ``HOLD_MAX``
        seconds at most). News that tasks started, alone, waits up to ``HOLD_STARTED``
        for their end. Anything else (a short queue: chains, the end of a graph, long
        tasks; a failure) leaves at the end of this loop turn as before.
        """
        if self._urgent:
            return False
        updates = self._task_updates
        if len(updates) < HOLD_BATCH and \
                self._waiting_for_cpu() >= max(HOLD_QUEUE, 2 * self.cpus):
            return True
        # Only "started" news (a chain's next link, say): it may wait a moment for the
        # task's end, so that one message instead of two wakes the server.
        return not self._object_updates and all(u[1] == RUNNING_STATE for u in updates)

    def _waiting_for_cpu(self):
        """Tasks here that wait for a CPU: in the queue, or sent to an executor behind
        the call it is running."""
        waiting = len(self.queue)
        for executor in self.executors.all.values():
            if len(executor.calls) > 1:
                waiting += len(executor.calls) - 1
        return waiting

    def _flush_held(self):
        self._hold_timer = None
        self._urgent = True
        self._flush()

    def _flush(self):
        self._flush_scheduled = False
        if not (self._task_updates or self._object_updates) or self.server is None:
            return
        if self._hold_updates():
            if self._hold_timer is None:
                self._hold_timer = self._loop.call_later(
                    HOLD_MAX if self.queue else HOLD_STARTED, self._flush_held)
            return
        self._urgent = False
        if self._hold_timer is not None:
            self._hold_timer.cancel()
            self._hold_timer = None
        msg = R.GovernorToServer.new_message()
        update = msg.init("update")
        objects, self._object_updates = self._object_updates, []
        tasks = _merge_task_updates(self._task_updates)
        self._task_updates = []
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

    def _schedule_monitoring(self):
        loop = asyncio.get_running_loop()

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
        if any(t.state == "running" for t in self.tasks.values()):
            asyncio.get_running_loop().call_later(0.05, self._check_drained)
        elif self.closed is not None and not self.closed.done():
            self.closed.set_result("drained")

    async def close(self):
        self._closing = True
        if self._hold_timer is not None:
            self._hold_timer.cancel()
            self._hold_timer = None
        if self._expire_timer is not None:
            self._expire_timer.cancel()
            self._expire_timer = None
        for task in list(self.tasks.values()):
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


def _merge_task_updates(updates):
    """Drop the "running" entry of a task that also finished in this batch: the server
    records the start from the finished entry (whose info has the start time)."""
    finished = set()
    for key, state, _ in updates:
        if state == FINISHED_STATE:
            finished.add(key)
    if not finished:
        return updates
    return [u for u in updates if u[1] != RUNNING_STATE or u[0] not in finished]


def _write_file(path, data):
    with open(path, "wb") as f:
        f.write(data)


def _copy_any(source, target):
    if os.path.isdir(source):
        shutil.copytree(source, target, symlinks=True)
    else:
        shutil.copyfile(source, target)
