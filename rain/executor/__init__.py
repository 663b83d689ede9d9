"""The Python executor (``python -m rain.executor``) and the ``ctx`` of Python tasks.

A governor spawns executors and keeps them; each runs one task at a time. The protocol
between governor and executor is documented in ``docs/executor-protocol.md``; the pieces
here are ``main`` (socket loop), ``runner`` (running a ``call``: the pure core) and
``context`` (``Context``, the ``ctx`` argument of Python tasks).

This package is imported by the client too (for the task config format), so it must stay
light: nothing heavy is imported here.
"""
