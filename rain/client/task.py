"""Tasks of the graph (client side)."""
from ..common.attributes import TaskInfo, TaskSpec, TaskSpecInput
from ..common.errors import RainException
from ..common.ids import ID
from ..common.labeled_list import LabeledList
from .data import DataObject, to_dataobj
from .output import Output
from .session import client_location, get_active_session


def retry_policy(retries, retry_on_error):
    """The ``(retries, retry_on_error)`` of a task, or None for the defaults.

    ``retries``: how many times the task runs again after a failure (None: the server's
    default for system failures, 3); ``retry_on_error``: errors raised by the task's own
    code count as failures to retry too (else only a crash of its executor or governor,
    or a lost input transfer, does)."""
    if retries is not None and (not isinstance(retries, int) or isinstance(retries, bool)
                                or not 0 <= retries < 2**31):
        raise RainException(f"retries must be a non-negative integer or None, not "
                            f"{retries!r}")
    if not isinstance(retry_on_error, bool):
        raise RainException(f"retry_on_error must be True or False, not {retry_on_error!r}")
    if retries is None and not retry_on_error:
        return None
    return (retries, retry_on_error)


class Task:
    """A node of the graph that runs: built-in, external program, or Python function.

    A big graph has millions of these, so a task keeps its fields in slots and builds the
    richer views (``spec``, the labeled ``inputs``/``outputs``) only when asked. Once
    ``spec`` was asked for, it is what gets submitted (changes to it count).
    """

    # ``_in`` / ``_out``: the one input / output object itself, else a tuple of them (a
    # tuple per task would double what the cyclic GC has to traverse while a big graph
    # is built).
    __slots__ = ("session", "_id", "_task_type", "_config", "_in", "_input_labels",
                 "_inputs", "_out", "_outputs", "_cpus", "_resources", "_name",
                 "_user", "_spec_cache", "_state", "_info", "_created_at", "_retries",
                 "__weakref__")

    #: The task type of instances of a subclass that passes no ``task_type`` (how tasks
    #: of one's own executors are declared: ``class Hello(Task): TASK_TYPE = "ex/hello"``).
    TASK_TYPE = None

    def __init__(self, inputs=(), outputs=None, *, config=None, session=None, task_type=None,
                 cpus=1, name=None, user_spec=None, resources=None, retries=None,
                 retry_on_error=False):
        if session is None:
            session = get_active_session()
        if task_type is None:
            task_type = self.TASK_TYPE
            if task_type is None:
                raise RainException("Task needs a task_type (or a subclass with TASK_TYPE)")
        if not isinstance(cpus, int) or isinstance(cpus, bool) or cpus < 0:
            raise RainException(f"cpus must be a non-negative integer, not {cpus!r}")
        self.session = session
        self._created_at = client_location()
        self._id = session._register_task(self)

        objs = []
        labels = None
        for item in inputs:
            if isinstance(item, tuple) and len(item) == 2 and (item[0] is None or
                                                              isinstance(item[0], str)):
                label, value = item
            else:
                label, value = None, item
            obj = value if value.__class__ is DataObject else to_dataobj(value)
            if obj.session is not session:
                raise RainException(f"{obj!r} belongs to another session")
            if label is not None:
                if labels is None:
                    labels = [None] * len(objs)
                elif label in labels:
                    label = None    # duplicate labels are allowed on inputs (same object)
            if labels is not None:
                labels.append(label)
            objs.append(obj)
        self._in = objs[0] if len(objs) == 1 else tuple(objs)
        self._input_labels = None if labels is None else tuple(labels)
        self._inputs = None

        self._outputs = None
        if outputs is None or (outputs.__class__ is int and outputs == 1):
            self._out = DataObject(session=session)
        elif isinstance(outputs, int) and not isinstance(outputs, bool):
            self._out = tuple([DataObject(session=session) for _ in range(outputs)])
        elif outputs.__class__ in (list, tuple) and len(outputs) == 1 and \
                outputs[0].__class__ is Output and \
                (outputs[0].label is None or outputs[0].label.__class__ is str):
            self._out = outputs[0].create_data_object(session)   # one label: nothing to check
        else:
            output_list = LabeledList()
            for item in outputs:
                if isinstance(item, DataObject):
                    obj = item
                    if obj.session is not session:
                        raise RainException(f"{obj!r} belongs to another session")
                elif isinstance(item, Output):
                    obj = item.create_data_object(session)
                elif isinstance(item, str) or item is None:
                    obj = DataObject(label=item, session=session)
                else:
                    raise RainException(f"Invalid output {item!r}: expected a label, an "
                                        "Output or a DataObject")
                output_list.append(obj, obj.label)     # checks the labels
            self._out = output_list[0] if len(output_list) == 1 else tuple(output_list)

        if resources:
            extra = {}
            for key, amount in resources.items():
                if not isinstance(key, str) or not isinstance(amount, (int, float)) \
                        or amount < 0:
                    raise RainException(f"invalid resource request {key!r}: {amount!r}")
                if key == "cpus":
                    cpus = amount
                else:
                    extra[key] = amount
            resources = extra or None
        else:
            resources = None
        self._task_type = task_type
        self._config = config
        self._cpus = cpus
        self._resources = resources
        self._name = name
        self._user = dict(user_spec) if user_spec else None
        self._retries = retry_policy(retries, retry_on_error)
        self._spec_cache = None
        self._state = None
        self._info = None

    # -- identity -----------------------------------------------------------------------------
    @property
    def id(self):
        return ID(self.session.session_id, self._id)

    @property
    def spec(self):
        """The ``TaskSpec``; built on first use, and from then on what is submitted."""
        spec = self._spec_cache
        if spec is None:
            session_id = self.session.session_id
            labels = self._input_labels or (None,) * len(self._input_objs)
            resources = {"cpus": self._cpus}
            if self._resources:
                resources.update(self._resources)
            spec = self._spec_cache = TaskSpec(
                id=ID(session_id, self._id), task_type=self._task_type, config=self._config,
                inputs=[TaskSpecInput(ID(session_id, obj._id), label)
                        for obj, label in zip(self._input_objs, labels)],
                outputs=[ID(session_id, obj._id) for obj in self._output_objs],
                resources=resources, name=self._name, user=dict(self._user or {}))
            if self._state is not None:
                spec._freeze()
        return spec

    _spec = spec

    @property
    def _input_objs(self):
        objs = self._in
        return objs if objs.__class__ is tuple else (objs,)

    @property
    def _output_objs(self):
        objs = self._out
        return objs if objs.__class__ is tuple else (objs,)

    @property
    def name(self):
        spec = self._spec_cache
        return self._name if spec is None else spec.name

    @property
    def task_type(self):
        spec = self._spec_cache
        return self._task_type if spec is None else spec.task_type

    @property
    def config(self):
        spec = self._spec_cache
        return self._config if spec is None else spec.config

    @property
    def cpus(self):
        spec = self._spec_cache
        return self._cpus if spec is None else spec.resources.get("cpus", 1)

    @property
    def retries(self):
        """``(retries, retry_on_error)`` as given; ``retries`` None: the server's default
        (3 runs again after system failures)."""
        policy = self._retries
        return (None, False) if policy is None else policy

    @property
    def inputs(self):
        inputs = self._inputs
        if inputs is None:
            inputs = self._inputs = LabeledList(
                self._input_objs, self._input_labels or (None,) * len(self._input_objs))
        return inputs

    @property
    def outputs(self):
        outputs = self._outputs
        if outputs is None:
            outputs = self._outputs = LabeledList(
                self._output_objs, [obj.label for obj in self._output_objs])
        return outputs

    @property
    def output(self):
        """The only output; RainException when there are none or several."""
        outputs = self._out
        if outputs.__class__ is not tuple:
            return outputs
        if len(outputs) != 1:
            raise RainException(f"Task {self._id} has {len(outputs)} outputs; 'output' "
                                "needs exactly one (use 'outputs')")
        return outputs[0]

    @property
    def state(self):
        return self._state

    @property
    def info(self):
        return self._info

    __hash__ = object.__hash__

    def __eq__(self, other):
        return self is other

    def __repr__(self):
        name = f" {self.name!r}" if self.name else ""
        state = f" {self._state.name}" if self._state is not None else ""
        return f"<Task {self.session.session_id}/{self._id} {self.task_type}{name}{state}>"

    # -- actions -------------------------------------------------------------------------------
    def keep_outputs(self):
        for obj in self._output_objs:
            obj.keep()

    def unkeep_outputs(self):
        self.session.unkeep(list(self._output_objs))

    def fetch_outputs(self):
        """Fetch every output; returns a list of ``DataInstance``."""
        return [self.session.fetch(obj) for obj in self._output_objs]

    def wait(self):
        self.session.wait([self])

    def update(self):
        self.session.update([self])

    def _set_info(self, info_json):
        self._info = TaskInfo.from_json(info_json) if info_json else TaskInfo()
