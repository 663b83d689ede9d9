"""Running governors on the hosts of a batch allocation or a host list: which hosts with how
many CPUs (``nodes``), how a command reaches them (``launch``), and batch jobs that add
governors while tasks wait (``autoscale``)."""


def __getattr__(name):
    # ``from rain.alloc import Autoscaler`` without loading it for ``nodes``/``launch``.
    if name in ("Autoscaler", "AllocError"):
        from . import autoscale
        return getattr(autoscale, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
