"""Task and object states: one set of numbers and names for every component.

The numbers are those of the wire enums ``TaskState`` and ``ObjectState`` in
``rain/capnp/rain.capnp`` and of the governor's update columns; the names are the wire
names, which the client's ``rpc`` enums, the REST API and the event log also show.
"""

#: Task states, in the order of the wire enum ``TaskState``.
NOT_ASSIGNED, READY, ASSIGNED, RUNNING, FINISHED, FAILED = range(6)
TASK_STATE_NAMES = ("notAssigned", "ready", "assigned", "running", "finished", "failed")

#: Object states, in the order of the wire enum ``ObjectState``.
UNFINISHED, OBJ_FINISHED, REMOVED = range(3)
OBJECT_STATE_NAMES = ("unfinished", "finished", "removed")

#: What a user sees of a task (dashboard, REST filters, notebook widgets): the server's
#: six states folded into four; ``TASK_PHASE[state]`` is the phase of a task state.
WAITING_PHASE, RUNNING_PHASE, FINISHED_PHASE, FAILED_PHASE = range(4)
PHASE_NAMES = ("waiting", "running", "finished", "failed")
TASK_PHASE = (WAITING_PHASE, WAITING_PHASE, WAITING_PHASE, RUNNING_PHASE, FINISHED_PHASE,
              FAILED_PHASE)

#: Data types of objects (wire enum ``DataType``).
BLOB, DIRECTORY = 0, 1
