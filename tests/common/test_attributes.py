import json

import pytest

from rain.common import ID, DataType, RainException
from rain.common.attributes import (ObjectInfo, ObjectSpec, TaskInfo, TaskSpec,
                                    TaskSpecInput)
from rain.common.ids import id_from_pair


def test_id_and_data_type():
    i = ID(1, 10)
    assert repr(i) == "ID(session_id=1, id=10)"
    assert i.session_id == 1 and i.id == 10 and i == (1, 10)
    assert id_from_pair([2, 3]) == ID(2, 3)
    assert {i: 1}[ID(1, 10)] == 1
    assert DataType.from_str("blob") is DataType.BLOB
    assert DataType.from_str("dir") is DataType.DIRECTORY
    assert DataType.DIRECTORY.to_str() == "dir"
    with pytest.raises(ValueError):
        DataType.from_str("file")


def test_task_spec_defaults_are_fresh():
    a, b = TaskSpec(), TaskSpec()
    assert a.resources == {"cpus": 1} and a.inputs == [] and a.user == {}
    assert a.config is None and a.name is None and a.id is None
    a.user["k"] = 1
    a.resources["cpus"] = 4
    a.inputs.append(TaskSpecInput(ID(1, 1)))
    assert b.user == {} and b.resources == {"cpus": 1} and b.inputs == []
    assert TaskInfo().user is not TaskInfo().user
    assert ObjectSpec().user is not ObjectSpec().user


@pytest.mark.parametrize("cls", [TaskSpec, TaskInfo, ObjectSpec, ObjectInfo])
def test_unknown_attribute(cls):
    with pytest.raises(TypeError, match="bogus"):
        cls(bogus=1)
    with pytest.raises(TypeError):
        cls(1)


def test_task_spec_json_roundtrip():
    spec = TaskSpec(id=ID(1, 5), task_type="buildin/concat", config={"a": [1, 2]},
                    inputs=[TaskSpecInput(ID(1, 1), "x"), TaskSpecInput(ID(1, 2))],
                    outputs=[ID(1, 6)], resources={"cpus": 2}, name="cat",
                    user={"note": "hi"})
    data = spec.to_json()
    assert data == {
        "id": [1, 5], "task_type": "buildin/concat", "config": {"a": [1, 2]},
        "inputs": [{"id": [1, 1], "label": "x"}, {"id": [1, 2]}],
        "outputs": [[1, 6]], "resources": {"cpus": 2}, "name": "cat",
        "user": {"note": "hi"}}
    json.dumps(data)
    back = TaskSpec.from_json(json.loads(json.dumps(data)))
    assert back == spec
    assert isinstance(back.id, ID) and isinstance(back.outputs[0], ID)
    assert isinstance(back.inputs[0], TaskSpecInput)


def test_task_spec_json_omits_empty():
    spec = TaskSpec(id=ID(1, 1), task_type="t", name="", user={})
    assert spec.to_json() == {"id": [1, 1], "task_type": "t", "resources": {"cpus": 1}}
    back = TaskSpec.from_json({"id": [1, 1]})
    assert back.inputs == [] and back.resources == {"cpus": 1} and back.user == {}
    # an empty config is a real value and survives
    assert TaskSpec(config={}).to_json()["config"] == {}
    assert TaskSpec(config=0).to_json()["config"] == 0


def test_infos_json():
    info = TaskInfo(error="boom", start_time="2024-01-01T00:00:00Z", duration=1.5,
                    governor="127.0.0.1:1234", debug="d", user={"x": 1})
    assert TaskInfo.from_json(info.to_json()) == info
    assert TaskInfo().to_json() == {}
    assert TaskInfo(duration=0.0).to_json() == {"duration": 0.0}
    oinfo = ObjectInfo(size=0, content_type="json")
    assert oinfo.to_json() == {"size": 0, "content_type": "json"}
    assert ObjectInfo.from_json(oinfo.to_json()) == oinfo
    assert ObjectInfo.from_json({}).error == ""
    info.error = "changed"  # infos stay writable
    assert info.error == "changed"


def test_object_spec():
    spec = ObjectSpec(id=ID(2, 3), label="out", content_type="json")
    assert spec.data_type is DataType.BLOB
    assert spec.to_json() == {"id": [2, 3], "label": "out", "content_type": "json",
                              "data_type": "blob"}
    d = ObjectSpec(id=(2, 4), data_type="dir")
    assert d.id == ID(2, 4) and isinstance(d.id, ID)
    assert d.data_type is DataType.DIRECTORY
    assert d.to_json()["data_type"] == "dir"
    assert ObjectSpec.from_json(d.to_json()) == d
    assert ObjectSpec.from_json({"id": [1, 1]}).data_type is DataType.BLOB


def test_freeze():
    spec = TaskSpec(id=ID(1, 1), task_type="t")
    spec.name = "before"
    spec._freeze()
    with pytest.raises(RainException, match="frozen after submit"):
        spec.name = "after"
    with pytest.raises(RainException):
        del spec.name
    assert spec.name == "before"
    ospec = ObjectSpec()
    ospec._freeze()
    with pytest.raises(RainException, match="frozen after submit"):
        ospec.content_type = "json"


def test_eq_repr_slots():
    assert TaskSpec(name="a") == TaskSpec(name="a")
    assert TaskSpec(name="a") != TaskSpec(name="b")
    assert TaskInfo() != ObjectInfo()
    assert TaskSpecInput(ID(1, 1), "a") == TaskSpecInput((1, 1), "a")
    assert TaskSpecInput(ID(1, 1), "a") != TaskSpecInput(ID(1, 1), "b")
    r = repr(TaskSpec(task_type="tt"))
    assert r.startswith("TaskSpec(") and "task_type='tt'" in r
    assert "size=3" in repr(ObjectInfo(size=3))
    assert "label='l'" in repr(TaskSpecInput(ID(1, 1), "l"))
    with pytest.raises(AttributeError):
        TaskInfo().nonexistent = 1
