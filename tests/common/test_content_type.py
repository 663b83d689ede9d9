import pytest

from rain.common import RainException
from rain.common.content_type import (check_content_type, decode_value, encode_value,
                                      is_type_instance, merge_content_types)


@pytest.mark.parametrize("ct", [None, "", "pickle", "cloudpickle", "json", "cbor", "arrow",
                                "text", "text-latin1", "text-utf-16", "mime/image/png",
                                "user/mytype", "dir"])
def test_valid(ct):
    assert check_content_type(ct) is None       # accepted: no RainException
    assert is_type_instance(ct, ct)


@pytest.mark.parametrize("ct", ["foo", "text-", "text-nosuchencoding", "mime", "mime/",
                                "user/", "user", "Pickle", 5, "json-x"])
def test_invalid(ct):
    with pytest.raises(RainException):
        check_content_type(ct)


def test_is_type_instance():
    assert is_type_instance("json", None)
    assert is_type_instance("json", "")
    assert is_type_instance(None, None)
    assert is_type_instance("json", "json")
    assert is_type_instance("text-latin1", "text")
    assert is_type_instance("mime/image/png", "mime/image")
    assert is_type_instance("cloudpickle", "pickle")
    assert not is_type_instance("pickle", "cloudpickle")
    assert not is_type_instance("text", "text-latin1")
    assert not is_type_instance("textual", "text")
    assert not is_type_instance(None, "json")
    assert not is_type_instance("json", "cbor")


def test_merge():
    assert merge_content_types(None, "json") == "json"
    assert merge_content_types("json", None) == "json"
    assert merge_content_types("", "cbor") == "cbor"
    assert merge_content_types(None, None) is None
    assert merge_content_types("json", "json") == "json"
    assert merge_content_types("text", "text-latin1") == "text-latin1"
    assert merge_content_types("text-latin1", "text") == "text-latin1"
    assert merge_content_types("pickle", "cloudpickle") == "cloudpickle"
    assert merge_content_types("cloudpickle", "pickle") == "cloudpickle"
    with pytest.raises(RainException, match="json.*cbor"):
        merge_content_types("json", "cbor")
    with pytest.raises(RainException):
        merge_content_types("text-latin1", "text-utf-8")


@pytest.mark.parametrize("ct", ["pickle", "cloudpickle", "json", "cbor"])
def test_roundtrip_structured(ct):
    value = {"a": [1, 2, 3], "b": "x"}
    data = encode_value(value, ct)
    assert isinstance(data, bytes)
    assert decode_value(data, ct) == value
    assert decode_value(memoryview(data), ct) == value


def test_pickle_lambda():
    f = decode_value(encode_value(lambda x: x + 1, "pickle"), "pickle")
    assert f(1) == 2


def test_json_bytes():
    assert encode_value([1, "a"], "json") == b'[1, "a"]'
    with pytest.raises(RainException, match="json"):
        encode_value(object(), "json")
    with pytest.raises(RainException):
        decode_value(b"{not json", "json")


def test_text():
    assert encode_value("h\u00e9", "text") == "h\u00e9".encode("utf-8")
    assert encode_value("h\u00e9", "text-latin1") == b"h\xe9"
    assert decode_value(b"h\xe9", "text-latin1") == "h\u00e9"
    assert decode_value("h\u00e9".encode(), "text") == "h\u00e9"
    with pytest.raises(RainException):
        encode_value(b"bytes", "text")
    with pytest.raises(RainException):
        encode_value("\u4e00", "text-latin1")
    with pytest.raises(RainException):
        decode_value(b"\xff\xfe\xfa", "text")


def test_arrow():
    import pyarrow as pa
    table = pa.table({"x": [1, 2, 3], "y": ["a", "b", "c"]})
    assert decode_value(encode_value(table, "arrow"), "arrow").equals(table)
    batch = pa.record_batch({"x": [1, 2]})
    assert decode_value(encode_value(batch, "arrow"), "arrow").equals(
        pa.Table.from_batches([batch]))
    array = pa.array([1.5, 2.5])
    result = decode_value(encode_value(array, "arrow"), "arrow")
    assert result.column_names == ["values"]
    assert result.column("values").to_pylist() == [1.5, 2.5]
    with pytest.raises(RainException):
        decode_value(b"garbage", "arrow")


@pytest.mark.parametrize("value", [[1, 2, 3], ["a", None], {"x": [1, 2], "y": ["a", "b"]},
                                   7, "text", {"k": 1}])
def test_arrow_plain_python_values(value):
    assert decode_value(encode_value(value, "arrow"), "arrow") == value


def test_arrow_refuses_what_it_cannot_hold():
    with pytest.raises(RainException, match="cannot encode"):
        encode_value([1, "mixed"], "arrow")


def test_mime_user_passthrough():
    assert encode_value(b"\x89PNG", "mime/image/png") == b"\x89PNG"
    assert encode_value(bytearray(b"ab"), "user/x") == b"ab"
    with pytest.raises(RainException):
        encode_value("str", "mime/text/plain")
    with pytest.raises(RainException, match="decoder"):
        decode_value(b"\x89PNG", "mime/image/png")
    with pytest.raises(RainException):
        decode_value(b"x", "user/x")


def test_unknown_content_type():
    with pytest.raises(RainException, match="cannot encode"):
        encode_value(b"x", None)
    with pytest.raises(RainException, match="cannot encode"):
        encode_value(b"x", "")
    with pytest.raises(RainException):
        encode_value(1, "foo")
    with pytest.raises(RainException):
        decode_value(b"x", None)
    with pytest.raises(RainException):
        encode_value(b"x", "dir")
    with pytest.raises(RainException):
        decode_value(b"x", "dir")
