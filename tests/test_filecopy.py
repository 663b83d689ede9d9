"""Private copies of stored files (``rain.governor.filecopy``): the same bytes, and a
sparse file stays sparse, so a copy of a mostly empty 4 GiB object is quick and small."""
import os

import pytest

from rain.governor.filecopy import copy_file

MiB = 1 << 20


def make(path, size, pieces):
    with open(path, "wb") as f:
        for offset, data in pieces:
            f.seek(offset)
            f.write(data)
        f.truncate(size)


@pytest.mark.parametrize("size, pieces", [
    (0, []),
    (5, [(0, b"hello")]),
    (3 * MiB + 7, [(0, os.urandom(3 * MiB + 7))]),
    (64 * MiB, []),
    (64 * MiB, [(10 * MiB, b"middle")]),
    (64 * MiB, [(0, b"head"), (64 * MiB - 4, b"tail")]),
    (64 * MiB + 1, [(5, b"x" * MiB), (40 * MiB, b"y" * MiB)]),
])
def test_the_copy_has_the_same_bytes(tmp_path, size, pieces):
    make(tmp_path / "source", size, pieces)
    copy_file(tmp_path / "source", tmp_path / "copy")
    assert (tmp_path / "copy").read_bytes() == (tmp_path / "source").read_bytes()


def test_holes_stay_holes(tmp_path):
    size = 4 << 30
    make(tmp_path / "source", size, [(0, b"head"), (2 << 30, b"x" * MiB),
                                     (size - 4, b"tail")])
    copy_file(tmp_path / "source", tmp_path / "copy")
    copy = tmp_path / "copy"
    assert copy.stat().st_size == size
    # Blocks of 512 bytes: the data extents, not 4 GiB.
    assert copy.stat().st_blocks * 512 < 64 * MiB
    with open(copy, "rb") as f:
        assert f.read(4) == b"head"
        f.seek(2 << 30)
        assert f.read(MiB) == b"x" * MiB
        f.seek(size - 4)
        assert f.read() == b"tail"
