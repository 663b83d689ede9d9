"""The ``rain`` command: ``server``, ``governor``, ``start``, ``stop``, ``status``,
``alloc``, ``dashboard``, ``report``.

Exit codes: 0 ok, 1 runtime failure, 2 usage error.
"""
import argparse
import sys

from . import __version__
from .common.address import address_arg, parse_listen_range
from .runtime_dir import RuntimeDirError
from .tls import add_tls_arguments


def listen_range_arg(text):
    """Like ``address_arg``, also accepting a port range ``FIRST-LAST``."""
    try:
        parse_listen_range(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"invalid address {text!r}: {exc}") from None
    return text


def seconds_or_zero(text):
    """argparse type of a duration in seconds (>= 0; 0 means none)."""
    return 0.0 if text.strip() in ("0", "0.0") else positive_seconds(text)


def positive_seconds(text):
    """argparse type of a duration in seconds (> 0)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: a number of seconds "
                                         "above 0")
    return value


def byte_size(text):
    """argparse type of a size in bytes, with an optional K, M or G suffix (powers of
    1024): ``64M``."""
    units = {"K": 2**10, "M": 2**20, "G": 2**30}
    number, unit = text.strip(), 1
    if number[-1:].upper() in units:
        number, unit = number[:-1], units[number[-1].upper()]
    try:
        value = int(number) * unit
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"invalid size {text!r}: bytes above 0, with an "
                                         "optional K, M or G suffix (e.g. 64M)")
    return value


def build_parser():
    parser = argparse.ArgumentParser(
        prog="rain",
        description="Rain: a distributed task-pipeline runtime (server, governors, tools).")
    parser.add_argument("--version", action="version", version=f"rain {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    p = commands.add_parser("server", help="run a server",
                            description="Run the Rain server (scheduler, RPC and HTTP).")
    p.add_argument("-l", "--listen", metavar="ADDR", default=None, type=address_arg,
                   help="RPC address for clients and governors: IP:PORT, IP or PORT "
                        "(default port 7210)")
    p.add_argument("--http-listen", metavar="ADDR", default=None, type=address_arg,
                   help="HTTP address for the dashboard, REST and events (default port 7222)")
    p.add_argument("--logdir", metavar="DIR", default=None,
                   help="directory for logs and events.db (default: a fresh temporary dir)")
    p.add_argument("--ready-file", metavar="FILE", default=None,
                   help="create FILE (content 'ready') once both listeners are bound")
    p.add_argument("--heartbeat-timeout", metavar="SECONDS", type=positive_seconds,
                   default=30.0,
                   help="give up a governor silent for this long (it exits when it hears "
                        "nothing from the server as long); default 30")
    p.add_argument("--max-submit-size", metavar="SIZE", type=byte_size, default=2**30,
                   help="largest message a client (a submit with its constants) or a "
                        "governor may send, e.g. 512M; a bigger one is refused and its "
                        "connection closed (default 1G)")
    p.add_argument("--unschedulable-timeout", metavar="SECONDS", type=seconds_or_zero,
                   default=60.0,
                   help="fail tasks that no connected governor can run (none is "
                        "connected, or none has the resources they ask for) after this "
                        "long unless one that can joins; 0: wait forever; default 60")
    p.add_argument("--debug", action="store_true", help="verbose logging")
    add_tls_arguments(p, "server")

    p = commands.add_parser("governor", help="run a governor",
                            description="Run a governor that executes tasks for a server.")
    p.add_argument("server_address", metavar="SERVER_ADDR", type=address_arg,
                   help="host[:port] of the server (default port 7210)")
    p.add_argument("-l", "--listen", metavar="ADDR", default=None, type=listen_range_arg,
                   help="address for data transfers: IP:PORT, PORT, or a range "
                        "[IP:]FIRST-LAST of which the first free port is taken "
                        "(default: a random port)")
    p.add_argument("--cpus", default=None, metavar="N",
                   help="CPUs offered; -X means all detected minus X (default: all)")
    p.add_argument("--config", metavar="FILE", default=None,
                   help="TOML with [executors.NAME] command = \"...\" and [resources]")
    p.add_argument("--workdir", metavar="DIR", default=None,
                   help="data and task directory (default: a fresh temporary dir)")
    p.add_argument("--logdir", metavar="DIR", default=None,
                   help="governor and executor logs (default: a fresh temporary dir)")
    p.add_argument("--executor-log-max", metavar="SIZE", type=byte_size, default=64 * 2**20,
                   help="bytes kept per output file of an executor or a program, e.g. 16M: "
                        "beyond it the file moves to FILE.1 and a new one begins, so the "
                        "last SIZE to 2*SIZE bytes are kept (default 64M)")
    p.add_argument("--ready-file", metavar="FILE", default=None,
                   help="create FILE once registered at the server ('-': a line on standard "
                        "output)")
    p.add_argument("--token-file", metavar="FILE", default=None,
                   help="the cluster's token, in a user-only file ('-': one line on "
                        "standard input); default: RAIN_TOKEN, else the token of a server "
                        "of this user on this machine")
    add_tls_arguments(p, "governor")

    from .starter import add_start_arguments
    p = commands.add_parser("start", help="start a server and governors in the background",
                            description="Start a server and governors as background "
                                        "processes, wait until all are ready, and exit.")
    add_start_arguments(p)

    p = commands.add_parser(
        "alloc", help="add governors in batch jobs while tasks wait",
        usage="rain alloc {slurm,pbs} [options] [-- SBATCH/QSUB ARGS]",
        description="Watch a server; while tasks wait and no CPU is free, submit one-node "
                    "batch jobs that each run a governor (at most --max-nodes at once); "
                    "a governor idle for --idle-timeout seconds leaves and its job ends. "
                    "Runs until interrupted, then cancels its jobs. Arguments after '--' "
                    "go to sbatch or qsub.")
    p.add_argument("scheduler", choices=["slurm", "pbs"])
    p.add_argument("--server", metavar="ADDR", default=None, type=address_arg,
                   help="the server, as the batch nodes reach it (default: the only "
                        "cluster started by 'rain start')")
    p.add_argument("--http", metavar="ADDR", default=None, type=address_arg,
                   help="the server's HTTP address (default: found from its state)")
    p.add_argument("--max-nodes", type=int, default=1, metavar="N",
                   help="at most N jobs (one node each) at once (default 1)")
    p.add_argument("--time", default="1h", metavar="DURATION",
                   help="time limit of each job: 1h, 30m, 01:00:00 (default 1h)")
    p.add_argument("--idle-timeout", type=float, default=60.0, metavar="SECONDS",
                   help="a governor without tasks this long leaves (default 60)")
    p.add_argument("--interval", type=float, default=2.0, metavar="SECONDS",
                   help="how often to look at the server (default 2)")

    p = commands.add_parser("stop", help="stop a cluster started by 'rain start'",
                            description="Stop clusters started by 'rain start'.")
    p.add_argument("target", nargs="?", default=None, metavar="PORT_OR_ID",
                   help="server port or cluster id (default: the only running cluster)")
    p.add_argument("--all", action="store_true", help="stop every cluster of this user")

    p = commands.add_parser("status", help="show clusters started by 'rain start'",
                            description="Show the Rain clusters of this user on this "
                                        "machine.")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = commands.add_parser("token", help="print the token of a server of this user",
                            description="Print the token of a Rain server of this user on "
                                        "this machine (for HTTP requests, or to copy to "
                                        "another machine as RAIN_TOKEN).")
    p.add_argument("server_address", nargs="?", default=None, metavar="SERVER_ADDR",
                   type=address_arg,
                   help="host[:port] of the server (default: the only running one)")

    p = commands.add_parser("dashboard", help="serve the dashboard of a run from its logs",
                            description="Serve the dashboard of a finished (or running) run "
                                        "from its events.db, with no cluster needed.")
    p.add_argument("--logdir", metavar="DIR", required=True,
                   help="the server's log directory (or the events.db file itself)")
    p.add_argument("--http-listen", metavar="ADDR", default=None, type=address_arg,
                   help="HTTP address: IP:PORT, IP or PORT (default port 7222)")

    p = commands.add_parser("report", help="write a self-contained HTML report of a run",
                            description="Write one self-contained HTML file with the charts "
                                        "of a session of a run, from its events.db.")
    p.add_argument("--logdir", metavar="DIR", required=True,
                   help="the server's log directory (or the events.db file itself)")
    p.add_argument("-o", "--output", metavar="FILE", required=True, help="HTML file to write")
    p.add_argument("--session", metavar="N", type=int, default=None,
                   help="session id (default: the last session with tasks)")
    return parser


def main(argv=None):
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    scheduler_args = []
    if argv[:1] == ["alloc"] and "--" in argv:
        # Everything after "--" is for sbatch/qsub, options included.
        split = argv.index("--")
        argv, scheduler_args = argv[:split], argv[split + 1:]
    args = parser.parse_args(argv)
    args.scheduler_args = scheduler_args
    try:
        return _run(parser, args)
    except RuntimeDirError as exc:
        print(f"rain {args.command}: {exc}", file=sys.stderr)
        return 1


def _run(parser, args):
    if args.command == "server":
        from .server.main import main as server_main
        return server_main(args, dashboard=_dashboard_handlers)
    if args.command == "governor":
        from .governor.main import main as governor_main
        return governor_main(args)
    if args.command == "dashboard":
        from .dashboard.postmortem import dashboard_command
        return dashboard_command(args)
    if args.command == "report":
        from .dashboard.postmortem import report_command
        return report_command(args)
    if args.command == "token":
        from .auth import token_command
        return token_command(args)
    from . import starter
    if args.command == "alloc":
        from .alloc.autoscale import alloc_command
        if args.server is None:
            clusters = starter.list_clusters()
            if len(clusters) != 1:
                parser.error("alloc: give --server (no single cluster of 'rain start' "
                             "runs here)")
            args.server = clusters[0]["server"]
        return alloc_command(args)
    if args.command == "start":
        return starter.start_command(args, parser)
    if args.command == "stop":
        return starter.stop_command(args)
    if args.command == "status":
        return starter.status_command(args)
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())


def _dashboard_handlers(server):
    """The live dashboard's pages for a running server (the server package does not
    import the dashboard, which reads the server's run model)."""
    from .dashboard.web import live_handlers
    return live_handlers(server)
