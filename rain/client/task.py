"""Tasks of the graph (client side)."""
import cbor2

from ..common.attributes import TaskInfo, TaskSpec, TaskSpecInput
from ..common.cbor import dumps_or_empty
from ..common.errors import RainException
from ..common.ids import ID
from ..common.labeled_list import LabeledList
from .data import DataObject, to_dataobj
from .rpc.common import TaskState
from .session import client_location, get_active_session


class Task:
    """A node of the graph that runs: built-in, external program, or Python function."""

    def __init__(self, inputs=(), outputs=None, *, config=None, session=None, task_type=None,
                 cpus=1, name=None, user_spec=None, resources=None):
        if session is None:
            session = get_active_session()
        if task_type is None:
            raise RainException("Task needs a task_type")
        if not isinstance(cpus, int) or isinstance(cpus, bool) or cpus < 0:
            raise RainException(f"cpus must be a non-negative integer, not {cpus!r}")
        self.session = session
        self._created_at = client_location()
        task_id = session._register_task(self)

        input_list = LabeledList()
        for item in inputs:
            if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], (str,
                                                                                   type(None))):
                label, value = item
            else:
                label, value = None, item
            obj = to_dataobj(value)
            if obj.session is not session:
                raise RainException(f"{obj!r} belongs to another session")
            if label is not None and label in input_list:
                # duplicate labels are allowed on inputs (same object twice)
                input_list.append(obj)
            else:
                input_list.append(obj, label)
        self._inputs = input_list

        output_list = LabeledList()
        if outputs is None:
            outputs = 1
        if isinstance(outputs, int) and not isinstance(outputs, bool):
            for _ in range(outputs):
                output_list.append(DataObject(session=session))
        else:
            from .output import Output
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
                output_list.append(obj, obj.label)
        self._outputs = output_list

        res = {"cpus": cpus}
        if resources:
            for key, amount in resources.items():
                if not isinstance(key, str) or not isinstance(amount, (int, float)) \
                        or amount < 0:
                    raise RainException(f"invalid resource request {key!r}: {amount!r}")
                res[key] = amount
        self._spec = TaskSpec(
            id=ID(session.session_id, task_id), task_type=task_type, config=config,
            inputs=[TaskSpecInput(obj.id, label) for label, obj in input_list.items()],
            outputs=[obj.id for obj in output_list], resources=res, name=name,
            user=dict(user_spec) if user_spec else {})
        self._state = None
        self._info = None

    # -- identity -----------------------------------------------------------------------------
    @property
    def id(self):
        return self._spec.id

    @property
    def spec(self):
        return self._spec

    @property
    def name(self):
        return self._spec.name

    @property
    def task_type(self):
        return self._spec.task_type

    @property
    def config(self):
        return self._spec.config

    @property
    def cpus(self):
        return self._spec.resources.get("cpus", 1)

    @property
    def inputs(self):
        return self._inputs

    @property
    def outputs(self):
        return self._outputs

    @property
    def output(self):
        """The only output; RainException when there are none or several."""
        count = len(self._outputs)
        if count != 1:
            raise RainException(f"Task {self.id[1]} has {count} outputs; 'output' needs "
                                "exactly one (use 'outputs')")
        return self._outputs[0]

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
        return f"<Task {self.id.session_id}/{self.id.id} {self.task_type}{name}{state}>"

    # -- actions -------------------------------------------------------------------------------
    def keep_outputs(self):
        for obj in self._outputs:
            obj.keep()

    def unkeep_outputs(self):
        self.session.unkeep(list(self._outputs))

    def fetch_outputs(self):
        """Fetch every output; returns a list of ``DataInstance``."""
        return [self.session.fetch(obj) for obj in self._outputs]

    def wait(self):
        self.session.wait([self])

    def update(self):
        self.session.update([self])

    # -- submit ---------------------------------------------------------------------------------
    def _fill_spec(self, builder):
        spec = self._spec
        builder.id = spec.id[1]
        builder.taskType = spec.task_type
        config = spec.config
        if config is not None:
            builder.config = cbor2.dumps(config)
        inputs = builder.init("inputs", len(spec.inputs))
        for i, item in enumerate(spec.inputs):
            entry = inputs[i]
            entry.id = item.id[1]
            if item.label:
                entry.label = item.label
        outputs = builder.init("outputs", len(spec.outputs))
        for i, oid in enumerate(spec.outputs):
            outputs[i] = oid[1]
        resources = spec.resources
        builder.cpus = resources.get("cpus", 1)
        if len(resources) > 1:
            builder.resources = cbor2.dumps({k: v for k, v in resources.items()
                                             if k != "cpus"})
        if spec.name:
            builder.name = spec.name
        if spec.user:
            builder.user = dumps_or_empty(spec.user)

    def _on_submitted(self):
        self._spec._freeze()
        self._state = TaskState.notAssigned

    def _set_info(self, info_json):
        self._info = TaskInfo.from_json(info_json) if info_json else TaskInfo()
