"""Children that must not outlive the process that started them."""
import ctypes
import signal

PR_SET_PDEATHSIG = 1


def die_with_parent(signum=signal.SIGTERM):
    """``preexec_fn`` of a child that gets ``signum`` when its parent dies (Linux; elsewhere
    a no-op). The kernel ties it to the starting *thread*: start such children from a
    thread that lives as long as the process (an event loop's)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signum)
    except OSError:
        pass


def killed_with_parent():
    """``preexec_fn`` of a program that is killed (SIGKILL) when its parent dies."""
    die_with_parent(signal.SIGKILL)
