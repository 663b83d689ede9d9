"""Switches read from the environment (test and debug modes)."""
import os


def env_flag(name):
    """Whether the environment variable ``name`` is set to a true value (1, true, yes, on)."""
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")
