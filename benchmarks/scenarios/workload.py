"""The work every system runs: trivial functions, importable by workers and executors.

Kept in a module (not ``__main__``) so Dask and Ray ship them by reference, as a real
program's functions would be; the benchmark runner puts this directory on ``PYTHONPATH``
of every process it starts. Each system gets the same function bodies; Rain's take the
executor context as their first argument.
"""

PAYLOAD = b"x"
CONST = b"abcdefgh"


def triv(i):
    return PAYLOAD


def inc(x):
    return PAYLOAD


def merge(items):
    return str(len(items)).encode()


def merge_args(*items):
    return str(len(items)).encode()


def concat(a, b):
    return a + b


def rain_functions():
    """The ``@remote`` versions (imported lazily: peers' runs never import rain)."""
    from rain.client import remote

    @remote
    def rain_triv(ctx, i):
        return PAYLOAD

    @remote
    def rain_inc(ctx, x):
        return PAYLOAD

    @remote
    def rain_merge(ctx, items):
        return str(len(items)).encode()

    return rain_triv, rain_inc, rain_merge
