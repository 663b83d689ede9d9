import pytest

from rain.common import LabeledList


def make():
    return LabeledList(["a", "b", "c"], labels=["x", None, "z"])


def test_construct_forms():
    assert len(LabeledList()) == 0
    plain = LabeledList([1, 2])
    assert list(plain) == [1, 2] and plain.labels() == [None, None]
    pairs = LabeledList(pairs=[("p", 1), (None, 2)])
    assert pairs == LabeledList([1, 2], labels=["p", None])
    with pytest.raises(ValueError):
        LabeledList([1, 2], labels=["a"])
    with pytest.raises(ValueError):
        LabeledList([1], pairs=[("a", 1)])
    with pytest.raises(KeyError):
        LabeledList([1, 2], labels=["a", "a"])
    with pytest.raises(TypeError):
        LabeledList([1], labels=[3])


def test_indexing():
    l = make()
    assert l[0] == "a" and l[-1] == "c"
    assert l["x"] == "a" and l["z"] == "c"
    with pytest.raises(KeyError):
        l["missing"]
    with pytest.raises(IndexError):
        l[3]
    sub = l[1:]
    assert isinstance(sub, LabeledList)
    assert list(sub.items()) == [(None, "b"), ("z", "c")]
    assert sub["z"] == "c"
    assert "x" not in sub


def test_append_and_label_checks():
    l = make()
    l.append("d")
    l.append("e", label="y")
    assert l["y"] == "e" and l.get_label(3) is None
    with pytest.raises(KeyError):
        l.append("f", label="x")
    with pytest.raises(TypeError):
        l.append("f", label=1)
    assert len(l) == 5


def test_insert():
    l = make()
    l.insert(1, "new", label="n")
    assert list(l) == ["a", "new", "b", "c"]
    assert l.labels() == ["x", "n", None, "z"]
    with pytest.raises(KeyError):
        l.insert(0, "dup", label="z")
    with pytest.raises(TypeError):
        l.insert(0, "bad", label=2.5)
    assert len(l) == 4


def test_delete():
    l = make()
    del l["x"]
    assert list(l) == ["b", "c"] and "x" not in l
    l.append("again", label="x")  # label is free again
    del l[0]
    assert l.labels() == ["z", "x"]
    del l[0:1]
    assert l.labels() == ["x"] and "z" not in l
    with pytest.raises(KeyError):
        del l["nope"]
    with pytest.raises(IndexError):
        del l[5]


def test_setitem():
    l = make()
    l[0] = "A"
    assert l["x"] == "A" and l.get_label(0) == "x"
    l["z"] = "C"
    assert l[2] == "C"
    with pytest.raises(IndexError):
        l[10] = 1


def test_set_and_labels():
    l = make()
    l.set(1, "B", label="y")
    assert l["y"] == "B"
    l.set(0, "A")
    assert l.get_label(0) is None and "x" not in l
    l.set(0, "A2", label="x")
    with pytest.raises(KeyError):
        l.set(0, "A3", label="z")
    with pytest.raises(TypeError):
        l.set(0, "A3", label=7)
    assert l[0] == "A2" and l.get_label(0) == "x"


def test_set_label():
    l = make()
    l.set_label(1, "y")
    assert l["y"] == "b"
    l.set_label(0, "x")  # same label on the same item is fine
    l.set_label(0, "w")
    assert "x" not in l and l["w"] == "a"
    with pytest.raises(KeyError):
        l.set_label(0, "z")
    with pytest.raises(TypeError):
        l.set_label(0, 5)
    l.set_label(2, None)
    assert "z" not in l and l.get_label(2) is None


def test_pop_index_get():
    l = make()
    assert l.pop() == "c" and "z" not in l
    assert l.pop(0) == "a" and "x" not in l
    assert list(l) == ["b"]
    l = make()
    assert l.index_of("z") == 2
    with pytest.raises(KeyError):
        l.index_of("q")
    assert l.get("x") == "a"
    assert l.get("q") is None and l.get("q", 5) == 5
    with pytest.raises(IndexError):
        LabeledList().pop()


def test_iteration_contains_items():
    l = make()
    assert list(l) == ["a", "b", "c"]
    assert "x" in l and "a" not in l and None not in l and 1 not in l
    assert list(l.items()) == [("x", "a"), (None, "b"), ("z", "c")]
    assert l.labels() == ["x", None, "z"]


def test_equality_copy_repr():
    l = make()
    assert l == make()
    assert l != LabeledList(["a", "b", "c"])
    assert l != LabeledList(["a", "b", "d"], labels=["x", None, "z"])
    assert l != ["a", "b", "c"]
    c = l.copy()
    assert c == l
    c.append("d", label="d")
    assert "d" not in l and len(l) == 3
    r = repr(l)
    assert "LabeledList" in r and "'x'" in r and "'a'" in r
