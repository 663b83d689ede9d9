import io
import os
import stat
import tarfile

import pytest

from rain.common import ID, DataInstance, DataType, RainException
from rain.common.attributes import ObjectInfo, ObjectSpec
from rain.common.content_type import encode_value


def make_tree(root):
    os.mkdir(root)
    with open(os.path.join(root, "a.txt"), "wb") as f:
        f.write(b"hello")
    os.mkdir(os.path.join(root, "sub"))
    with open(os.path.join(root, "sub", "b.bin"), "wb") as f:
        f.write(b"12345678")
    return root


def tar_of(members):
    """Build a tar; members are (name, bytes) files or (name, None) directories."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:") as tar:
        for name, content in members:
            info = tarfile.TarInfo(name)
            if content is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def tar_names(data):
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return tar.getnames()


def test_constructor_needs_exactly_one(tmp_path):
    with pytest.raises(RainException):
        DataInstance()
    f = tmp_path / "f"
    f.write_bytes(b"x")
    with pytest.raises(RainException):
        DataInstance(b"x", path=str(f))
    with pytest.raises(RainException):
        DataInstance("a str")
    with pytest.raises(RainException):
        DataInstance(path=str(tmp_path / "missing"))
    with pytest.raises(RainException):
        DataInstance(path=str(tmp_path), data_type=DataType.BLOB)
    with pytest.raises(RainException):
        DataInstance(path=str(f), data_type=DataType.DIRECTORY)


def test_memory_blob():
    d = DataInstance(bytearray(b"abc"), content_type="text")
    assert d.data == b"abc" and isinstance(d.data, bytes) and d.path is None
    assert d.get_bytes() == b"abc"
    assert d.get_str() == "abc"
    assert d.size == 3
    assert d.data_type is DataType.BLOB
    assert DataInstance(memoryview(b"xy")).get_bytes() == b"xy"


def test_file_blob(tmp_path):
    f = tmp_path / "f.json"
    f.write_bytes(b'{"k": 1}')
    d = DataInstance(path=str(f), content_type="json")
    assert d.path == str(f) and d.data is None
    assert d.size == 8
    assert d.get_bytes() == b'{"k": 1}'
    assert d.load() == {"k": 1}


def test_content_type_precedence():
    spec = ObjectSpec(id=ID(1, 2), content_type="text")
    info = ObjectInfo(content_type="text-latin1")
    assert DataInstance(b"x", spec=spec).content_type == "text"
    assert DataInstance(b"x", spec=spec, info=info).content_type == "text-latin1"
    assert DataInstance(b"x", spec=spec, info=info, content_type="json").content_type == "json"
    assert DataInstance(b"x", spec=spec, info=ObjectInfo()).content_type == "text"
    assert DataInstance(b"x").content_type is None
    d = DataInstance(b"x", spec=spec, info=info)
    assert d.spec is spec and d.info is info and d.object_id == ID(1, 2)
    assert DataInstance(b"x", spec=spec, object_id=ID(3, 4)).object_id == ID(3, 4)
    assert DataInstance(b"x").object_id is None


def test_data_type_from_spec(tmp_path):
    make_tree(str(tmp_path / "t"))
    spec = ObjectSpec(id=ID(1, 1), data_type=DataType.DIRECTORY)
    assert DataInstance(path=str(tmp_path / "t"), spec=spec).data_type is DataType.DIRECTORY
    assert DataInstance(b"x", data_type="blob").data_type is DataType.BLOB


def test_get_str_encoding():
    assert DataInstance(b"h\xe9", content_type="text-latin1").get_str() == "h\u00e9"
    assert DataInstance("h\u00e9".encode()).get_str() == "h\u00e9"
    with pytest.raises(UnicodeDecodeError):
        DataInstance(b"h\xe9").get_str()


def test_load_and_cache():
    data = encode_value({"a": 1}, "pickle")
    d = DataInstance(data, content_type="pickle")
    assert d.load() == {"a": 1}
    assert d.load() is not d.load()
    first = d.load(cache=True)
    assert d.load(cache=True) is first
    assert DataInstance(b"x", content_type="text").load() == "x"
    assert DataInstance(encode_value([1], "cbor"), content_type="cbor").load() == [1]


def test_load_without_content_type():
    with pytest.raises(RainException, match="content type"):
        DataInstance(b"x").load()
    with pytest.raises(RainException):
        DataInstance(b"x", content_type="mime/image/png").load()


def test_write_blob(tmp_path):
    d = DataInstance(b"payload")
    d.write(str(tmp_path / "out"))
    assert (tmp_path / "out").read_bytes() == b"payload"
    src = tmp_path / "src"
    src.write_bytes(b"file")
    os.chmod(src, 0o444)
    DataInstance(path=str(src)).write(str(tmp_path / "copy"))
    assert (tmp_path / "copy").read_bytes() == b"file"
    assert os.stat(tmp_path / "copy").st_mode & stat.S_IWUSR
    assert not os.path.islink(tmp_path / "copy")
    with pytest.raises(RainException, match="exists"):
        d.write(str(tmp_path / "out"))
    with pytest.raises(RainException, match="parent"):
        d.write(str(tmp_path / "no" / "such" / "out"))


def test_link_with_path_is_symlink(tmp_path):
    src = tmp_path / "src"
    src.write_bytes(b"data")
    DataInstance(path=str(src)).link(str(tmp_path / "ln"))
    assert os.path.islink(tmp_path / "ln")
    assert os.readlink(tmp_path / "ln") == str(src)
    make_tree(str(tmp_path / "tree"))
    DataInstance(path=str(tmp_path / "tree"), data_type="dir").link(str(tmp_path / "tl"))
    assert os.path.islink(tmp_path / "tl")
    assert (tmp_path / "tl" / "sub" / "b.bin").read_bytes() == b"12345678"


def test_link_from_memory_is_read_only(tmp_path):
    DataInstance(b"mem").link(str(tmp_path / "ln"))
    assert not os.path.islink(tmp_path / "ln")
    assert (tmp_path / "ln").read_bytes() == b"mem"
    assert os.stat(tmp_path / "ln").st_mode & 0o222 == 0


def test_directory_from_path(tmp_path):
    root = make_tree(str(tmp_path / "t"))
    d = DataInstance(path=root, data_type=DataType.DIRECTORY)
    assert d.size == 13
    data = d.get_bytes()
    names = tar_names(data)
    assert names == ["a.txt", "sub", "sub/b.bin"]
    assert data == d.get_bytes()
    with pytest.raises(RainException):
        d.get_str()
    with pytest.raises(RainException):
        DataInstance(path=root, data_type="dir", content_type="dir").load()
    d.write(str(tmp_path / "copy"))
    assert (tmp_path / "copy" / "sub" / "b.bin").read_bytes() == b"12345678"
    assert not os.path.islink(tmp_path / "copy")


def test_directory_from_tar_data(tmp_path):
    data = tar_of([("./x", None), ("./x/f", b"abc"), ("g", b"zz")])
    d = DataInstance(data, data_type=DataType.DIRECTORY)
    assert d.size == 5
    assert d.get_bytes() == data
    d.write(str(tmp_path / "out"))
    assert (tmp_path / "out" / "x" / "f").read_bytes() == b"abc"
    assert (tmp_path / "out" / "g").read_bytes() == b"zz"
    assert os.stat(tmp_path / "out" / "g").st_mode & stat.S_IWUSR
    d.link(str(tmp_path / "ro"))
    assert (tmp_path / "ro" / "x" / "f").read_bytes() == b"abc"
    assert os.stat(tmp_path / "ro" / "x" / "f").st_mode & 0o222 == 0
    assert os.stat(tmp_path / "ro").st_mode & 0o222 == 0
    for root, dirs, files in os.walk(tmp_path / "ro"):
        os.chmod(root, 0o755)


def test_directory_roundtrip_through_tar(tmp_path):
    root = make_tree(str(tmp_path / "t"))
    data = DataInstance(path=root, data_type="dir").get_bytes()
    DataInstance(data, data_type="dir").write(str(tmp_path / "back"))
    assert (tmp_path / "back" / "a.txt").read_bytes() == b"hello"
    assert (tmp_path / "back" / "sub" / "b.bin").read_bytes() == b"12345678"


@pytest.mark.parametrize("name", ["/abs", "../up", "a/../../up"])
def test_unsafe_tar_rejected(tmp_path, name):
    data = tar_of([(name, b"evil")])
    d = DataInstance(data, data_type=DataType.DIRECTORY)
    with pytest.raises(RainException, match="unsafe"):
        d.write(str(tmp_path / "out"))
    assert not os.path.exists(tmp_path / "out")
    assert not os.path.exists(tmp_path / "up")


def test_unsafe_symlink_rejected(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:") as tar:
        info = tarfile.TarInfo("link")
        info.type = tarfile.SYMTYPE
        info.linkname = "../../etc"
        tar.addfile(info)
    with pytest.raises(RainException, match="unsafe"):
        DataInstance(buf.getvalue(), data_type="dir").write(str(tmp_path / "out"))


def test_invalid_tar(tmp_path):
    with pytest.raises(RainException):
        DataInstance(b"not a tar" * 100, data_type="dir").write(str(tmp_path / "o"))


def test_repr(tmp_path):
    r = repr(DataInstance(b"abc", content_type="json"))
    assert "json" in r and "size=3" in r and "blob" in r
    root = make_tree(str(tmp_path / "t"))
    r = repr(DataInstance(path=root, data_type="dir"))
    assert "dir" in r and "size=13" in r
