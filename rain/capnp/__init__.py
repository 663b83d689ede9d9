"""Loads the Cap'n Proto schema of the wire protocol once, for every process.

Decision (own framing vs pycapnp RPC) and its figures: see ``rain.common.framing``.
"""
import os

import capnp

capnp.remove_import_hook()

SCHEMA_PATH = os.path.join(os.path.dirname(__file__), "rain.capnp")
rain_capnp = capnp.load(SCHEMA_PATH)

PROTOCOL_VERSION = rain_capnp.protocolVersion

#: Reading limit for incoming messages: a submit of a million tasks is far beyond pycapnp's
#: default of 64 MiB of words, and frames are already bounded by ``MAX_FRAME_SIZE``.
TRAVERSAL_LIMIT = 2**62

