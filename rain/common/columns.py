"""Column helpers shared by every columnar message: submits (client -> server),
assignments (server -> governor) and updates (governor -> server).

A column is a packed little-endian array of ints, a string column (a table of distinct
strings plus an Int32 index per item) or sparse data (ascending indexes plus their
values). Readers check what they get and raise ``error(message)``, so each message kind
keeps its own error type (a submit's goes back to its client, an assignment's is logged).
"""
import sys
from array import array
from itertools import islice

SWAP = sys.byteorder != "little"


class ColumnError(ValueError):
    """Columns that do not fit together."""


# -- writing ----------------------------------------------------------------------------

def pack(typecode, values):
    """``values`` as a packed little-endian array of ``typecode`` ("i": Int32)."""
    packed = array(typecode, values)
    if SWAP:
        packed.byteswap()
    return packed.tobytes()


def string_table(values):
    """``(table, index)`` of a string column; None when every value is empty (the column
    is then left out)."""
    if not any(values):
        return None
    table = {}
    index = [table.setdefault(value or "", len(table)) for value in values]
    return list(table), index


def sparse_indexes(values):
    """The positions of the non-empty values (a sparse column's indexes)."""
    return [i for i, value in enumerate(values) if value]


# -- reading ----------------------------------------------------------------------------

def unpack(typecode, data, what, count=None, error=ColumnError):
    """A packed column as an array; ``count`` values when given."""
    values = array(typecode)
    try:
        values.frombytes(data)
    except ValueError:
        raise error(f"column {what}: {len(data)} bytes is not a whole number of "
                    "values") from None
    if SWAP:
        values.byteswap()
    if count is not None and len(values) != count:
        raise error(f"column {what} has {len(values)} values for {count} items")
    return values


def ints(data, what, count=None, error=ColumnError):
    """A packed Int32 column as a list."""
    return unpack("i", data, what, count, error).tolist()


def strings(table, index_data, what, count, error=ColumnError):
    """``count`` strings of a string column (no index: all "")."""
    if not index_data:
        return [""] * count
    index = ints(index_data, f"{what}.index", count, error)
    if index and (min(index) < 0 or max(index) >= len(table)):
        raise error(f"column {what} points outside its table of {len(table)} strings")
    return [table[i] for i in index]


def index_set(data, what, count, error=ColumnError):
    """Ascending unique indexes below ``count`` (a sparse column's positions)."""
    indexes = ints(data, what, None, error)
    if indexes:
        if indexes[0] < 0 or indexes[-1] >= count:
            raise error(f"column {what} has an index outside 0..{count - 1}")
        if len(indexes) > 1 and not all(map(int.__lt__, indexes, islice(indexes, 1, None))):
            raise error(f"column {what} is not ascending and unique")
    return indexes


def sparse(indexes, values, what, count, default, error=ColumnError):
    """A list of ``count`` values: ``default`` except at ``indexes`` (checked with
    ``index_set``), which get ``values``."""
    if len(indexes) != len(values):
        raise error(f"column {what} has {len(indexes)} indexes and {len(values)} values")
    result = [default] * count
    for index, value in zip(indexes, values):
        result[index] = value
    return result
