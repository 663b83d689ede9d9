"""Rain for Python: a distributed task-pipeline runtime compatible with Rain 0.4's client."""

__version__ = "0.5.0"
