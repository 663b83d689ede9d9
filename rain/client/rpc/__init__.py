"""Protocol-level names kept where Rain 0.4's client had them (``rain.client.rpc.common``)."""
from . import common  # noqa: F401
