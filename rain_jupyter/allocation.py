"""``%rain alloc``: batch jobs that bring governors to the notebook's cluster while its
tasks wait (``rain.alloc.Autoscaler`` in this kernel); ``allocation_card`` shows them on the card.

The autoscaler runs as a thread of the kernel and ends with ``%rain alloc stop``,
``%rain stop`` or the kernel, cancelling the jobs it submitted.
"""
import shlex

from IPython.core.error import UsageError
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from rain.alloc.autoscale import SCHEDULERS, AllocError, Autoscaler


@magic_arguments(name="rain alloc")
@argument("scheduler", metavar="slurm|pbs|stop",
          help="the batch scheduler to submit to, or 'stop' to stop and cancel the jobs")
@argument("--max-nodes", type=int, default=1, metavar="N",
          help="at most N jobs (one node each) at once (default 1)")
@argument("--time", default="1h", metavar="DURATION",
          help="time limit of each job: 1h, 30m, 01:00:00 (default 1h)")
@argument("--idle-timeout", type=float, default=60.0, metavar="S",
          help="a governor without tasks this long leaves and its job ends (default 60)")
@argument("--interval", type=float, default=2.0, metavar="S",
          help="how often to look at the server and the jobs (default 2)")
@argument("--server", default=None, metavar="HOST:PORT",
          help="the server as the batch nodes reach it (default: this kernel's client's)")
@argument("--http", default=None, metavar="HOST:PORT",
          help="the server's dashboard address (default: found from its state files)")
def alloc_spec(line):
    """Submit batch jobs of governors while tasks wait; arguments after '--' go to
    sbatch or qsub."""


SUMMARY = ("Add governors in batch jobs (Slurm or PBS, one node each) while tasks wait; "
           "idle ones leave. '%rain alloc stop' cancels the jobs.")


def usage():
    return ("%rain alloc slurm|pbs [--max-nodes N] [--time DURATION] [--idle-timeout S] "
            "[--interval S] [--server HOST:PORT] [--http HOST:PORT] [-- SBATCH/QSUB ARGS]"
            " | %rain alloc stop")


def parse(text):
    """The arguments of ``%rain alloc``; everything after ``--`` goes to the scheduler."""
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise UsageError(f"{exc}. Usage: {usage()}") from None
    scheduler_args = []
    if "--" in words:
        split = words.index("--")
        words, scheduler_args = words[:split], words[split + 1:]
    try:
        args = parse_argstring(alloc_spec, shlex.join(words))
    except UsageError as exc:
        raise UsageError(f"{exc}. Usage: {usage()}") from None
    args.scheduler_args = scheduler_args
    if args.scheduler not in (*SCHEDULERS, "stop"):
        raise UsageError(f"unknown scheduler {args.scheduler!r} (slurm, pbs or stop). "
                         f"Usage: {usage()}")
    if args.max_nodes < 1:
        raise UsageError(f"--max-nodes must be at least 1. Usage: {usage()}")
    for name in ("idle_timeout", "interval"):
        if not getattr(args, name) > 0:
            raise UsageError(f"--{name.replace('_', '-')} must be above 0. "
                             f"Usage: {usage()}")
    if args.scheduler == "stop" and (scheduler_args or text.strip() != "stop"):
        raise UsageError("%rain alloc stop takes no options")
    return args


def start(args, client, cluster=None):
    """An ``Autoscaler`` for the cluster of ``client`` (``cluster``: the one this kernel
    started, whose dashboard address is known), started."""
    server = args.server or f"{client.address}:{client.port}"
    http = args.http
    if http is None and cluster is not None:
        http = cluster.dashboard_url.split("//", 1)[-1].split("/", 1)[0]
    try:
        scaler = Autoscaler(server, args.scheduler, max_nodes=args.max_nodes,
                            time=args.time, scheduler_args=args.scheduler_args,
                            idle_timeout=args.idle_timeout, interval=args.interval,
                            http=http)
    except (AllocError, ValueError) as exc:
        raise UsageError(f"{exc}. Usage: {usage()}") from None
    return scaler.start()
