"""A second local user for tests of what another user can and cannot do.

As root the tests make (once per machine) an unprivileged user and run commands as it;
as an ordinary user they cannot, and skip with the reason."""
import os
import pwd
import subprocess

import pytest

NAME = "rain-other"


def second_user():
    """``(uid, gid)`` of the second user, created when missing; skips unless root."""
    if os.getuid() != 0:
        pytest.skip("needs root to create and act as a second local user")
    try:
        entry = pwd.getpwnam(NAME)
    except KeyError:
        result = subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                                 "/usr/sbin/nologin", NAME], capture_output=True, text=True)
        try:
            entry = pwd.getpwnam(NAME)
        except KeyError:
            pytest.fail(f"cannot create the user {NAME}: {result.stderr.strip()}")
    return entry.pw_uid, entry.pw_gid


def run_as_other(command, **kwargs):
    """Run ``command`` as the second user (a ``subprocess.run`` result)."""
    uid, gid = second_user()
    return subprocess.run(command, user=uid, group=gid, extra_groups=[],
                          capture_output=True, text=True, timeout=60, **kwargs)
