"""Concrete data of a data object, held in memory or in a file/directory.

Clients receive a DataInstance from ``fetch()`` and Python tasks receive their inputs
as DataInstances; it hides whether the bytes are in memory or on disk and whether the
object is a blob or a directory (transported as an uncompressed tar archive).
"""

import io
import os
import posixpath
import shutil
import stat
import tarfile

from .content_type import decode_value
from .errors import RainException
from .ids import DataType

_BYTES_TYPES = (bytes, bytearray, memoryview)
_NOT_LOADED = object()


def _member_is_safe(member):
    """Reject members that would land outside the extraction directory."""
    name = member.name
    if name.startswith("/") or "\\" in name:
        return False
    parts = posixpath.normpath(name).split("/")
    if ".." in parts:
        return False
    if member.issym() or member.islnk():
        target = member.linkname
        if target.startswith("/"):
            return False
        base = posixpath.dirname(name) if member.issym() else ""
        if posixpath.normpath(posixpath.join(base, target)).split("/")[0] == "..":
            return False
    elif not (member.isfile() or member.isdir()):
        return False
    return True


def _open_tar(data=None, file=None):
    try:
        if file is not None:
            return tarfile.open(file, mode="r:")
        return tarfile.open(fileobj=io.BytesIO(data), mode="r:")
    except tarfile.TarError as e:
        raise RainException("directory data is not a valid tar archive: {}".format(e)) from e


def extract_tar(data, path):
    """Extract tar bytes into the new directory ``path``, refusing unsafe members."""
    _extract(_open_tar(data), path)


def extract_tar_file(tar_path, path):
    """Extract the tar archive in file ``tar_path`` into the new directory ``path``
    (read from the file as it goes: a big archive is never in memory)."""
    _extract(_open_tar(file=tar_path), path)


def _extract(tar, path):
    with tar:
        try:
            members = tar.getmembers()
        except tarfile.TarError as e:
            raise RainException("directory data is not a valid tar archive: {}".format(
                e)) from e
        for member in members:
            if not _member_is_safe(member):
                raise RainException("unsafe member {!r} in directory archive".format(
                    member.name))
        os.mkdir(path)
        kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        try:
            tar.extractall(path, members=members, **kwargs)
        except (tarfile.TarError, OSError) as e:
            shutil.rmtree(path, ignore_errors=True)
            raise RainException("cannot extract directory archive: {}".format(e)) from e


def make_tar(path):
    """Uncompressed tar of the contents of directory ``path`` (sorted, relative names)."""
    buffer = io.BytesIO()
    write_tar(path, buffer)
    return buffer.getvalue()


def write_tar(path, fileobj):
    """Write the tar of directory ``path`` to ``fileobj`` as it goes (``write`` calls only:
    a pipe, a socket writer or a chunk queue will do)."""

    def clean(info):
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    with tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for root, dirs, files in os.walk(path):
            dirs.sort()
            rel_root = os.path.relpath(root, path)
            entries = sorted(dirs + files)
            for name in entries:
                full = os.path.join(root, name)
                arcname = name if rel_root == "." else posixpath.join(
                    rel_root.replace(os.sep, "/"), name)
                tar.add(full, arcname=arcname, recursive=False, filter=clean)


def _make_writable(path):
    for root, dirs, files in os.walk(path):
        os.chmod(root, os.stat(root).st_mode | stat.S_IWUSR | stat.S_IRUSR | stat.S_IXUSR)
        for name in files:
            full = os.path.join(root, name)
            if not os.path.islink(full):
                os.chmod(full, os.stat(full).st_mode | stat.S_IWUSR | stat.S_IRUSR)


def _make_read_only(path):
    """Remove all write permission, bottom-up so the walk itself keeps working."""
    no_write = ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    if os.path.isdir(path) and not os.path.islink(path):
        for root, dirs, files in os.walk(path, topdown=False):
            for name in files:
                full = os.path.join(root, name)
                if not os.path.islink(full):
                    os.chmod(full, os.stat(full).st_mode & no_write)
            os.chmod(root, os.stat(root).st_mode & no_write)
    else:
        os.chmod(path, os.stat(path).st_mode & no_write)


class DataInstance:
    """The data of one object: bytes in memory (``data``) or a file/directory (``path``).

    ``data_type`` defaults to the spec's data type (or BLOB without a spec). For a
    directory, ``data`` is an uncompressed tar archive of its contents.
    """

    __slots__ = ("_data", "_path", "_data_type", "_content_type", "_spec", "_info",
                 "_object_id", "_loaded")

    def __init__(self, data=None, path=None, *, data_type=None, content_type=None,
                 spec=None, info=None, object_id=None):
        if (data is None) == (path is None):
            raise RainException("DataInstance needs exactly one of 'data' and 'path'")
        if data_type is None:
            data_type = getattr(spec, "data_type", None) or DataType.BLOB
        elif not isinstance(data_type, DataType):
            data_type = DataType.from_str(data_type)
        if data is not None:
            if not isinstance(data, _BYTES_TYPES):
                raise RainException("DataInstance data must be bytes, not {}".format(
                    type(data).__name__))
            if isinstance(data, memoryview):
                data = data.tobytes()
            elif isinstance(data, bytearray):
                data = bytes(data)
        else:
            path = os.path.abspath(os.fspath(path))
            if data_type == DataType.DIRECTORY:
                if not os.path.isdir(path):
                    raise RainException("{!r} is not a directory".format(path))
            elif not os.path.isfile(path):
                raise RainException("{!r} is not a file".format(path))
        self._data = data
        self._path = path
        self._data_type = data_type
        self._content_type = content_type
        self._spec = spec
        self._info = info
        self._object_id = object_id if object_id is not None else getattr(spec, "id", None)
        self._loaded = _NOT_LOADED

    # -- properties -------------------------------------------------------------------

    @property
    def content_type(self):
        """Explicit content type, else the info's, else the spec's, else None."""
        if self._content_type:
            return self._content_type
        for source in (self._info, self._spec):
            content_type = getattr(source, "content_type", None)
            if content_type:
                return content_type
        return None

    @property
    def data_type(self):
        return self._data_type

    @property
    def spec(self):
        return self._spec

    @property
    def info(self):
        """The object's ``ObjectInfo``; in a task, ``info.user`` set on a returned
        instance goes with the output."""
        info = self._info
        if info is None:
            from .attributes import ObjectInfo
            info = self._info = ObjectInfo()
        return info

    @property
    def object_id(self):
        return self._object_id

    @property
    def path(self):
        """Absolute path of the backing file or directory, or None if in memory."""
        return self._path

    @property
    def data(self):
        """In-memory bytes, or None if backed by a path."""
        return self._data

    @property
    def size(self):
        """Size in bytes; for a directory the sum of its file sizes."""
        if self._data_type == DataType.DIRECTORY:
            if self._data is not None:
                with _open_tar(self._data) as tar:
                    return sum(m.size for m in tar.getmembers() if m.isfile())
            total = 0
            for root, _, files in os.walk(self._path):
                for name in files:
                    full = os.path.join(root, name)
                    if not os.path.islink(full):
                        total += os.path.getsize(full)
            return total
        if self._data is not None:
            return len(self._data)
        return os.path.getsize(self._path)

    # -- access -----------------------------------------------------------------------

    def get_bytes(self):
        """The content as bytes; a directory gives an uncompressed tar archive."""
        if self._data is not None:
            return self._data
        if self._data_type == DataType.DIRECTORY:
            return make_tar(self._path)
        with open(self._path, "rb") as f:
            return f.read()

    def get_str(self):
        """The content decoded as text (encoding from a ``text-ENC`` type, else UTF-8)."""
        if self._data_type == DataType.DIRECTORY:
            raise RainException("a directory cannot be read as a string")
        content_type = self.content_type
        encoding = "utf-8"
        if content_type and content_type.startswith("text-"):
            encoding = content_type[5:]
        return self.get_bytes().decode(encoding)

    def load(self, cache=False):
        """Decode the content according to its content type."""
        if cache and self._loaded is not _NOT_LOADED:
            return self._loaded
        content_type = self.content_type
        if not content_type:
            raise RainException("cannot load data without a content type; "
                                "use get_bytes() or get_str()")
        if self._data_type == DataType.DIRECTORY:
            raise RainException("a directory cannot be loaded; use write() or link()")
        value = decode_value(self.get_bytes(), content_type)
        if cache:
            self._loaded = value
        return value

    # -- materialisation --------------------------------------------------------------

    def _check_target(self, path):
        path = os.path.abspath(os.fspath(path))
        if os.path.lexists(path):
            raise RainException("{!r} already exists".format(path))
        if not os.path.isdir(os.path.dirname(path)):
            raise RainException("parent directory of {!r} does not exist".format(path))
        return path

    def write(self, path):
        """Create a fresh, writable copy of the data at ``path`` (which must not exist)."""
        path = self._check_target(path)
        if self._data_type == DataType.DIRECTORY:
            if self._path is not None:
                shutil.copytree(self._path, path, symlinks=True)
            else:
                extract_tar(self._data, path)
            _make_writable(path)
        elif self._path is not None:
            shutil.copyfile(self._path, path)
        else:
            with open(path, "wb") as f:
                f.write(self._data)

    def link(self, path):
        """Make the data visible read-only at ``path``: a symlink if possible, else a copy."""
        path = self._check_target(path)
        if self._path is not None:
            try:
                os.symlink(self._path, path,
                           target_is_directory=self._data_type == DataType.DIRECTORY)
                return
            except OSError:
                pass
        self.write(path)
        _make_read_only(path)

    def __repr__(self):
        location = "path={!r}".format(self._path) if self._path is not None else "in memory"
        return "<DataInstance content_type={!r} size={} data_type={} {}>".format(
            self.content_type, self.size, self._data_type.to_str(), location)
