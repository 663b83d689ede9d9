"""Directories that only their user may enter: work directories hold stored objects and
log directories hold event logs with session names, neither for other users' eyes."""
import logging
import os
import stat

logger = logging.getLogger(__name__)


class SharedDirectoryError(OSError):
    """A directory shared with other users was given where a private one is needed."""


def private_dir(path):
    """Create ``path`` (and its parents) if needed and make it user-only (0700).

    A directory of another user, or a sticky one meant for everybody (``/tmp``), is never
    changed: it is refused with a message that says what to give instead."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    info = os.stat(path)
    if info.st_mode & stat.S_ISVTX or info.st_uid != os.getuid():
        raise SharedDirectoryError(
            f"{path} is shared with other users; give a directory of your own (Rain makes "
            f"it user-only)")
    if stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(path, stat.S_IMODE(info.st_mode) & 0o700)
        logger.info("made %s user-only (mode 0700)", path)
    return path


def private_file(path):
    """Make an existing file user-only (0600)."""
    os.chmod(path, 0o600)
