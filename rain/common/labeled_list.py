"""A list whose items may carry unique string labels.

Task inputs and outputs are positional but are usually referred to by name; this
container supports both ways of access while keeping the order.
"""


def _check_label_type(label):
    if label is not None and not isinstance(label, str):
        raise TypeError("label must be a str or None, not {}".format(type(label).__name__))


class LabeledList:
    """Mutable sequence of values with optional unique ``str`` labels.

    Indexing with an int or slice is positional; indexing with a str looks up a label.
    ``label in l`` tests labels, iteration yields values.
    """

    __slots__ = ("_items", "_labels", "_label_set")
    __hash__ = None

    def __init__(self, items=None, labels=None, pairs=None):
        self._items = []
        self._labels = []
        self._label_set = set()
        if pairs is not None:
            if items is not None or labels is not None:
                raise ValueError("give either items (and labels) or pairs, not both")
            for label, value in pairs:
                self.append(value, label)
            return
        if items is None:
            if labels is not None:
                raise ValueError("labels given without items")
            return
        if labels is None and isinstance(items, LabeledList):
            labels = items.labels()         # the copy constructor
        items = list(items)
        if labels is None:
            self._items = items
            self._labels = [None] * len(items)
            return
        labels = list(labels)
        if len(labels) != len(items):
            raise ValueError("items and labels differ in length ({} != {})"
                             .format(len(items), len(labels)))
        for value, label in zip(items, labels):
            self.append(value, label)

    # -- internals -------------------------------------------------------------------

    def _check_new_label(self, label):
        _check_label_type(label)
        if label is not None and label in self._label_set:
            raise KeyError("label {!r} already present".format(label))

    def _check(self):
        """Assert that the items, labels and label set agree (used by tests)."""
        assert len(self._items) == len(self._labels)
        labels = [label for label in self._labels if label is not None]
        assert len(labels) == len(set(labels)), "duplicate labels"
        assert set(labels) == self._label_set

    def _rebuild_label_set(self):
        self._label_set = {label for label in self._labels if label is not None}

    def _position(self, index):
        """Normalise an int index (negative allowed) to a valid position."""
        if not isinstance(index, int) or isinstance(index, bool):
            raise TypeError("index must be an int, not {}".format(type(index).__name__))
        n = len(self._items)
        pos = index + n if index < 0 else index
        if not 0 <= pos < n:
            raise IndexError("LabeledList index out of range")
        return pos

    # -- label access -----------------------------------------------------------------

    def index_of(self, label):
        """Position of the item with ``label``; ``KeyError`` if absent."""
        if not isinstance(label, str) or label not in self._label_set:
            raise KeyError(label)
        return self._labels.index(label)

    def get(self, label, default=None):
        """Value with ``label``, or ``default`` if no item has it."""
        if not isinstance(label, str) or label not in self._label_set:
            return default
        return self._items[self._labels.index(label)]

    def get_label(self, index):
        """Label of the item at ``index`` (None if unlabeled)."""
        return self._labels[self._position(index)]

    def set_label(self, index, label):
        """Change the label of the item at ``index``."""
        pos = self._position(index)
        _check_label_type(label)
        if label is not None and label in self._label_set and self._labels[pos] != label:
            raise KeyError("label {!r} already present".format(label))
        old = self._labels[pos]
        if old is not None:
            self._label_set.discard(old)
        self._labels[pos] = label
        if label is not None:
            self._label_set.add(label)

    def labels(self):
        """List of labels (None for unlabeled items), in order."""
        return list(self._labels)

    def items(self):
        """Iterator of ``(label, value)`` pairs, in order."""
        return zip(list(self._labels), list(self._items))

    # -- mutation ---------------------------------------------------------------------

    def append(self, value, label=None):
        """Add ``value`` at the end, optionally labeled."""
        self._check_new_label(label)
        self._items.append(value)
        self._labels.append(label)
        if label is not None:
            self._label_set.add(label)

    def extend(self, values):
        """Append every value of an iterable (labels are kept for a LabeledList)."""
        if isinstance(values, LabeledList):
            for label, value in list(values.items()):
                self.append(value, label)
        else:
            for value in values:
                self.append(value)

    def insert(self, index, value, label=None):
        """Insert ``value`` before ``index`` (list semantics), optionally labeled."""
        self._check_new_label(label)
        self._items.insert(index, value)
        self._labels.insert(index, label)
        if label is not None:
            self._label_set.add(label)

    def set(self, index, value, label=None):
        """Replace the item at ``index`` by ``value`` with ``label`` (None clears it)."""
        pos = self._position(index)
        self.set_label(pos, label)
        self._items[pos] = value

    def pop(self, index=-1):
        """Remove and return the value at ``index`` (or with the given label)."""
        if isinstance(index, str):
            index = self.index_of(index)
        pos = self._position(index)
        label = self._labels.pop(pos)
        if label is not None:
            self._label_set.discard(label)
        return self._items.pop(pos)

    def copy(self):
        """Shallow copy (the values are shared)."""
        new = LabeledList()
        new._items = list(self._items)
        new._labels = list(self._labels)
        new._label_set = set(self._label_set)
        return new

    # -- sequence protocol ------------------------------------------------------------

    def __getitem__(self, key):
        if isinstance(key, str):
            return self._items[self.index_of(key)]
        if isinstance(key, slice):
            new = LabeledList()
            new._items = self._items[key]
            new._labels = self._labels[key]
            new._rebuild_label_set()
            return new
        return self._items[self._position(key)]

    def __setitem__(self, key, value):
        if isinstance(key, str):
            if key in self._label_set:
                self._items[self._labels.index(key)] = value
            else:
                self.append(value, key)
            return
        if isinstance(key, slice):
            # as for a list; the new items carry their labels when a LabeledList is given
            values = list(value)
            labels = value.labels() if isinstance(value, LabeledList) else \
                [None] * len(values)
            items, old_labels = list(self._items), list(self._labels)
            items[key] = values
            old_labels[key] = labels
            rest = [label for label in old_labels if label is not None]
            if len(rest) != len(set(rest)):
                raise KeyError("slice assignment would duplicate a label")
            self._items, self._labels = items, old_labels
            self._rebuild_label_set()
            return
        self._items[self._position(key)] = value

    def __delitem__(self, key):
        if isinstance(key, str):
            self.pop(self.index_of(key))
            return
        if isinstance(key, slice):
            del self._items[key]
            del self._labels[key]
            self._rebuild_label_set()
            return
        self.pop(key)

    def __len__(self):
        return len(self._items)

    def __iter__(self):
        return iter(self._items)

    def __contains__(self, label):
        return isinstance(label, str) and label in self._label_set

    def __eq__(self, other):
        if not isinstance(other, LabeledList):
            return NotImplemented
        return self._items == other._items and self._labels == other._labels

    def __repr__(self):
        return "LabeledList(pairs={!r})".format(list(zip(self._labels, self._items)))
