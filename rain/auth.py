"""Cluster tokens. Authentication is not enforced yet: clients send an empty token unless
``RAIN_TOKEN`` is set."""
import os


def token_for_client(host, port):
    return os.environ.get("RAIN_TOKEN", "")
