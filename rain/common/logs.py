"""Logging set-up of the server and governor processes: a file in the log dir + stderr."""
import logging
import os
import sys

from .private import private_dir


def setup_logging(logdir, name, debug=False):
    level = logging.DEBUG if debug or os.environ.get("RAIN_LOG_DEBUG") else logging.INFO
    handlers = [logging.StreamHandler(sys.stderr)]
    if logdir:
        private_dir(logdir)
        handlers.append(logging.FileHandler(os.path.join(logdir, f"{name}.log")))
    logging.basicConfig(level=level, handlers=handlers,
                        format=f"%(asctime)s {name} %(levelname)s %(name)s: %(message)s")
