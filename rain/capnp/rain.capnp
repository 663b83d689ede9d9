@0xc7a1f0e3b2d49a61;
# Wire protocol of Rain for Python, between client, server and governors.
#
# Every connection carries frames: a 4-byte little-endian length followed by that many bytes.
# A frame is one Cap'n Proto message (unpacked encoding) of the struct that the connection's
# direction expects (see each struct's comment), except the raw data frames that follow a
# `DataReply` on a data connection. The first frame of every connection is a `Hello`;
# the answer is a `HelloReply`.
#
# Values that are free-form on purpose (task config, user attributes, info dicts, resource
# maps) travel as CBOR in `Data` fields; an empty `Data` means "none".

const protocolVersion :UInt32 = 2;

struct Hello {
  protocolVersion @0 :UInt32;
  token @1 :Text;             # the cluster's auth token ("" when authentication is off)
  role @2 :Role;
  enum Role {
    client @0;
    governor @1;
    data @2;                  # a peer governor or a client fetching object data
  }
  # Governor registration (role = governor):
  dataAddress @3 :Text;       # "ip:port" where this governor serves object data
  cpus @4 :Int32;
  resources @5 :Data;         # CBOR map: resource name -> amount, besides cpus
}

struct HelloReply {
  ok @0 :Bool;
  error @1 :Text;
  governorId @2 :Text;        # for a governor: the id the server knows it by
  protocolVersion @3 :UInt32;
}

struct Id {
  session @0 :Int32;
  id @1 :Int32;
}

enum DataType {
  blob @0;
  directory @1;
}

enum TaskState {
  notAssigned @0;
  ready @1;
  assigned @2;
  running @3;
  finished @4;
  failed @5;
}

enum ObjectState {
  unfinished @0;
  finished @1;
  removed @2;
}

# ------------------------------------------------------------------------------------------
# Client <-> server

# A submit is columnar: one packed column per field instead of a struct per task, so that
# both ends encode and decode it with bulk operations. Numeric columns are `Data` holding
# little-endian 32-bit signed integers; an item's position in its column is its *index*.

struct StringColumn {
  # One string per item: `table` holds the distinct strings, `index` one Int32 per item
  # pointing into it. An empty `index` means every item is "".
  table @0 :List(Text);
  index @1 :Data;
}

struct SparseData {
  # Bytes for a few items: `indexes` (Int32, ascending, unique) and the values, in order.
  indexes @0 :Data;
  values @1 :List(Data);
}

struct TaskColumns {
  ids @0 :Data;               # Int32 per task: its id within the submitting session
  types @1 :StringColumn;
  names @2 :StringColumn;
  cpus @3 :Data;              # Int32 per task; empty: every task needs 1
  configs @4 :Data;           # every task's CBOR config, one after another
  configEnds @5 :Data;        # Int32 per task: end offset of its config in `configs`
                              # (an empty config means none); empty: no task has one
  inputCounts @6 :Data;       # Int32 per task
  inputIds @7 :Data;          # Int32 per input, all tasks' inputs one after another
  inputLabels @8 :StringColumn; # one per input
  outputCounts @9 :Data;      # Int32 per task
  outputIds @10 :Data;        # Int32 per output, like inputIds
  resources @11 :SparseData;  # CBOR map of resources besides cpus
  user @12 :SparseData;       # CBOR map
  retries @13 :Data;          # Int32 per task: runs again after failures, -1 the server's
                              # default; empty: every task has the default
  retryOnError @14 :Data;     # Int32 indexes of the tasks whose own errors are retried too
}

struct ObjectColumns {
  ids @0 :Data;               # Int32 per object
  labels @1 :StringColumn;
  contentTypes @2 :StringColumn;
  directories @3 :Data;       # Int32 indexes of the objects that are directories
  keep @4 :Data;              # Int32 indexes of the objects to keep
  data @5 :SparseData;        # client constants: their bytes
  user @6 :SparseData;        # CBOR map
}

struct Submit {
  session @0 :Int32;
  tasks @1 :TaskColumns;
  objects @2 :ObjectColumns;
  rows @3 :Data;              # a small submit instead of the columns: one CBOR array
                              # [task rows, object rows] (rain/client/submit_encoding.py)
  uploads @4 :Data;           # CBOR array of [object id, governor id, size] (size -1 for a
                              # directory): constants of this submit that the client
                              # streamed into that governor's store before sending it (big
                              # blobs and directories; see DataRequest.upload). They have
                              # no bytes here and the server never holds them.
}

struct IdList {
  session @0 :Int32;
  tasks @1 :List(Int32);
  objects @2 :List(Int32);
}

struct ClientRequest {
  # Client -> server. Every request is answered by exactly one `ServerResponse` with the
  # same `requestId`, in any order.
  requestId @0 :UInt64;
  union {
    newSession @1 :Data;      # CBOR map: {"name": str, ...}
    closeSession @2 :Int32;
    submit @3 :Submit;
    wait @4 :IdList;          # answered when all listed items are finished
    waitAll @5 :Int32;        # session id
    waitSome @6 :IdList;      # answered when at least one listed item is finished
    fetch @7 :Id;             # object; answered when it is finished
    unkeep @8 :IdList;
    getState @9 :IdList;
    serverInfo @10 :Void;
    subscribe @11 :Data;      # CBOR map {"session": id or -1 for all}; starts `events` pushes
  }
}

struct TaskStatus {
  id @0 :Int32;
  state @1 :TaskState;
  info @2 :Data;              # CBOR map (TaskInfo fields)
}

struct ObjectStatus {
  id @0 :Int32;
  state @1 :ObjectState;
  info @2 :Data;              # CBOR map (ObjectInfo fields)
}

struct StateReply {
  tasks @0 :List(TaskStatus);
  objects @1 :List(ObjectStatus);
}

struct FetchReply {
  info @0 :Data;              # CBOR map (ObjectInfo)
  dataType @1 :DataType;
  contentType @2 :Text;
  size @3 :Int64;
  union {
    data @4 :Data;            # served inline (a constant held by the server)
    location @5 :Text;        # "ip:port" of a governor that serves it on its data port
  }
}

struct Error {
  message @0 :Text;
  kind @1 :Kind;
  enum Kind {
    request @0;               # the request itself was wrong (bad id, wrong order, ...)
    session @1;               # the session failed (a task error); message has the reason
    server @2;                # an internal failure, reported instead of crashing
  }
  task @2 :Int32;             # for kind = session: the failed task, or -1
  debug @3 :Text;
}

struct ServerResponse {
  requestId @0 :UInt64;
  union {
    ok @1 :Void;
    error @2 :Error;
    session @3 :Int32;
    state @4 :StateReply;
    fetch @5 :FetchReply;
    serverInfo @6 :Data;      # CBOR of the get_server_info() dict
  }
}

struct ServerToClient {
  union {
    response @0 :ServerResponse;
    events @1 :Data;          # CBOR list of event dicts (pushed after `subscribe`)
  }
}

# ------------------------------------------------------------------------------------------
# Server <-> governor

# An assignment is columnar like a submit (same conventions: Int32 columns, string tables,
# sparse bytes): the server fills it and a governor reads it with a few bulk operations.
# Ids are little-endian Int32 pairs (session, id), one pair per item.

struct AssignedObjects {
  # Everything a governor must know of the objects it will produce, receive or serve.
  ids @0 :Data;               # Int32 pair per object
  labels @1 :StringColumn;
  contentTypes @2 :StringColumn;
  directories @3 :Data;       # Int32 indexes of the objects that are directories
  user @4 :SparseData;        # CBOR map
  sizes @5 :Data;             # little-endian Int64 per object; -1 while unknown
  locationCounts @6 :Data;    # Int32 per object: how many governors hold it (none for an
                              # output to be produced); empty: no object has a location
  locations @7 :StringColumn; # "ip:port" of those governors, all objects' one after another
  data @8 :SparseData;        # constants: their bytes
}

struct AssignedTasks {
  ids @0 :Data;               # Int32 pair per task
  types @1 :StringColumn;
  names @2 :StringColumn;
  cpus @3 :Data;              # Int32 per task; empty: every task needs 1
  configs @4 :Data;           # every task's CBOR config, one after another
  configEnds @5 :Data;        # Int32 per task: end offset of its config in `configs`
                              # (an empty config means none); empty: no task has one
  inputCounts @6 :Data;       # Int32 per task
  inputIds @7 :Data;          # Int32 per input (an object of the task's session), all
                              # tasks' inputs one after another
  inputLabels @8 :StringColumn; # one per input
  outputCounts @9 :Data;      # Int32 per task
  outputIds @10 :Data;        # Int32 per output, like inputIds
  resources @11 :SparseData;  # CBOR map of resources besides cpus
  user @12 :SparseData;       # CBOR map
}

struct ServerToGovernor {
  union {
    assign @0 :Assignment;
    stopTasks @1 :Data;       # Int32 pairs (session, id): stop these tasks if running;
                              # forget them
    deleteObjects @2 :Data;   # Int32 pairs (session, id): move these objects to the
                              # delete list (deleted after the delay)
    infoRequest @3 :UInt64;   # answer with `info` carrying the same number
    heartbeat @4 :Float32;    # the server is alive; answer with `heartbeat`. The value is
                              # the timeout (s): a side silent that long is given up
  }
}

struct Assignment {
  objects @0 :AssignedObjects;          # stored before the tasks that use them
  tasks @1 :AssignedTasks;
  rows @2 :Data;              # a small assignment instead of the columns: one CBOR array
                              # [object rows, task rows] (rain/common/assign_columns.py)
}

struct GovernorInfo {
  requestId @0 :UInt64;
  tasks @1 :List(Id);
  objects @2 :List(Id);
  objectsToDelete @3 :List(Id);
}

struct GovernorToServer {
  union {
    update @0 :Update;
    info @1 :GovernorInfo;
    monitoring @2 :Data;      # CBOR map {cpu_usage, mem_usage, net_stat, ...}
    draining @3 :Void;        # give back queued tasks and send no new ones: leaving soon
    heartbeat @4 :Void;       # answer to the server's heartbeat
  }
}

struct Update {
  # One packed array per field (rain/common/update_columns.py): the server reads a batch
  # of thousands of entries with a few bulk operations instead of a call per field.
  # Tasks: running, finished or failed; objects: finished (now held by the governor) or
  # removed (dropped by it).
  taskIds @0 :Data;           # little-endian uint64 pairs (session, id)
  taskStates @1 :Data;        # one TaskState ordinal per byte
  taskInfos @2 :Data;         # CBOR array: per task the TaskInfo map (nested), or null
  objectIds @3 :Data;         # little-endian uint64 pairs (session, id)
  objectStates @4 :Data;      # one ObjectState ordinal per byte
  objectSizes @5 :Data;       # little-endian int64 per object
  objectDetails @6 :Data;     # CBOR array [[content type text per object], [info bytes ...]]
  rows @7 :Data;              # a small update instead of the columns: one CBOR array
                              # [object entries, task entries] (update_columns.pack_rows)
}

# ------------------------------------------------------------------------------------------
# Data connections (governor data port; peers and clients)

struct DataRequest {
  requestId @0 :UInt64;
  id @1 :Id;
  # upload: a client stores constant `id` on this governor. The request is followed by
  # the object's body, framed as a DataReply's body is; the governor answers with a
  # DataReply (no body) once the object is stored. The submit that names the object
  # says where it is (Submit.uploads).
  upload @2 :Bool;
  dataType @3 :DataType;
  contentType @4 :Text;
  label @5 :Text;
  size @6 :Int64;             # a blob's length, checked at the end; -1 for a directory
  # drop: forget a constant this client uploaded whose submit the server refused
  # (answered by a DataReply, no body).
  drop @7 :Bool;
  dense @8 :Bool;             # an upload's body is a file without holes (see DataReply)
}

struct DataReply {
  # Followed, when ok, by the object's body (a directory as a tar archive) as raw frames
  # of exactly CHUNK_SIZE bytes (2 MiB, rain/transfer/sinks.py) closed by one shorter
  # frame, maybe empty: a body below one chunk is a single frame, and a body of any size
  # needs no length wider than a frame's. The sender sends files with sendfile and waits
  # for room in the socket after each chunk; the receiver writes each frame to its sink
  # (a file, memory, an HTTP response; a dense body may go to its file by splice) and
  # pauses reading while a sink is behind. A connection carries one body at a time, in
  # the order of the requests.
  requestId @0 :UInt64;
  ok @1 :Bool;
  error @2 :Text;
  dataType @3 :DataType;
  contentType @4 :Text;
  size @5 :Int64;
  info @6 :Data;
  # dense: the body is a file without holes, so a receiver may move it into its own file
  # without reading it (rain/transfer/splice.py); otherwise it looks for chunks of zeros
  # to leave as holes.
  dense @7 :Bool;
}
