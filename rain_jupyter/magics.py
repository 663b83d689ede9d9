"""``%rain`` and ``%%rain``: start or connect to a cluster and run cells in sessions."""
import logging
import shlex
from html import escape
import sys

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from IPython.display import IFrame, display

from rain.client import Client
from rain.common.errors import RainException

from . import allocation, allocation_card, reprs
from .cluster_card import ClusterCard

logger = logging.getLogger(__name__)

COMMANDS = ("start", "connect", "status", "scale", "alloc", "stop", "dashboard", "help")


# Argument specifications, one per sub-command (their parsers print the usage lines).
@magic_arguments(name="rain start")
@argument("--governors", type=int, default=1, metavar="N",
          help="number of local governors (default 1)")
@argument("--cpus", type=int, default=None, metavar="C",
          help="CPUs of each governor (default: all CPUs shared among the governors)")
@argument("--port", type=int, default=None, metavar="P",
          help="server port for clients and governors (default: a free port)")
@argument("--http-port", type=int, default=None, metavar="H",
          help="dashboard and REST port (default: a free port)")
@argument("--logdir", default=None, metavar="DIR",
          help="keep the logs here, also after %%rain stop (the event log is "
               "DIR/server/events.db; default: a temporary directory removed at stop)")
@argument("--governor-config", default=None, metavar="TOML",
          help="governor config for every governor (e.g. [executors.NAME] command = ...)")
def _start_spec(line):
    """Start a server and local governors as children of this kernel."""


@magic_arguments(name="rain connect")
@argument("address", metavar="HOST[:PORT]", help="the server (default port 7210)")
@argument("--dashboard", default=None, metavar="URL", help="the cluster's dashboard URL")
def _connect_spec(line):
    """Connect to a running Rain server."""


@magic_arguments(name="rain scale")
@argument("governors", type=int, metavar="N", help="number of governors to have")
@argument("--timeout", type=float, default=60.0, metavar="S",
          help="how long removed governors may finish their running tasks (default 60)")
def _scale_spec(line):
    """Add or remove governors of the cluster started by %rain start."""


@magic_arguments(name="rain dashboard")
@argument("--inline", action="store_true", help="show the dashboard in the output")
@argument("--height", type=int, default=600, help="height of the inline dashboard")
def _dashboard_spec(line):
    """Link to (or show) the cluster's dashboard."""


@magic_arguments(name="rain status")
def _status_spec(line):
    """Show the cluster card."""


@magic_arguments(name="rain stop")
def _stop_spec(line):
    """Stop the cluster started here (or disconnect from a connected one)."""


@magic_arguments(name="rain-cell")
@argument("session", nargs="?", default=None, metavar="SESSION-NAME",
          help="run in this named session (default: the default session)")
@argument("--no-widget", action="store_true", help="do not show the live widget")
@argument("--no-graph", action="store_true", help="show the progress only, no graph view")
def _cell_spec(line):
    """Cell magic: the cell's tasks go into a session, submitted at the end of the cell."""


SPECS = {"start": _start_spec, "connect": _connect_spec, "scale": _scale_spec,
         "dashboard": _dashboard_spec, "status": _status_spec, "stop": _stop_spec}


SUMMARIES = {
    "start": "Start a server and N local governors (C CPUs each) as children of this "
             "kernel, wait until they are ready, bind a connected client as `rain_client`.",
    "connect": "Connect to a running Rain server and bind the client as `rain_client`.",
    "status": "Show the cluster card: governors, CPUs, dashboard link.",
    "scale": "Add or remove governors of the cluster started here (removed governors "
             "first finish their running tasks).",
    "alloc": allocation.SUMMARY,
    "stop": "Stop the cluster started by this kernel (or disconnect from a connected one).",
    "dashboard": "Link to the cluster's dashboard (--inline: show it in the output).",
}


def _usage(spec):
    words = spec.parser.format_usage().split()
    while words and words[0] in ("::", "usage:"):
        words.pop(0)
    text = " ".join(words)
    return text.replace("%rain-cell", "%%rain")


def _parse(spec, text):
    try:
        return parse_argstring(spec, text)
    except UsageError as exc:
        raise UsageError(f"{exc}. Usage: {_usage(spec)}") from None
    except ValueError as exc:    # unbalanced quotes and the like
        raise UsageError(f"{exc}. Usage: {_usage(spec)}") from None


def help_text():
    lines = ["%rain COMMAND [options]: a Rain cluster for this notebook.", ""]
    for name, spec in SPECS.items():
        lines.append(f"  {_usage(spec)}")
        lines.append(f"      {SUMMARIES[name]}")
        if name == "scale":
            lines.append(f"  {allocation.usage()}")
            lines.append(f"      {SUMMARIES['alloc']}")
    lines += ["  %rain help", "      This text.", "",
              f"  {_usage(_cell_spec)}",
              "      Cell magic: the cell's tasks go into the session (the default one",
              "      unless named), are submitted at the end of the cell, and the live",
              "      progress and graph widget is shown under the cell. The session is",
              "      bound as `rain_session`, the widget as `rain_widget`.", "",
              "Bad arguments give a one-line usage error. Stopping the kernel stops the",
              "cluster it started."]
    return "\n".join(lines)


@magics_class
class RainMagics(Magics):
    def __init__(self, shell):
        super().__init__(shell)
        self.cluster = None          # NotebookCluster started here
        self.client = None
        self.named_sessions = {}
        self.autoscaler = None       # rain.alloc.Autoscaler of %rain alloc
        self.session_cells = {}      # session -> keys of the %%rain cells that used it

    # -- entry ---------------------------------------------------------------------------------
    @line_cell_magic
    def rain(self, line, cell=None):
        __tracebackhide__ = True     # noqa: F841 (IPython leaves this frame out)
        if cell is not None:
            return self._cell(line, cell)
        try:
            words = shlex.split(line)
        except ValueError as exc:
            raise UsageError(f"{exc}. Try %rain help") from None
        if not words or words[0] in ("help", "-h", "--help"):
            print(help_text())
            return None
        command, rest = words[0], line.strip()[len(words[0]):]
        if command == "alloc":
            if "-h" in words[1:] or "--help" in words[1:]:
                print(SUMMARIES[command])
                print(allocation.alloc_spec.parser.format_help())
                return None
            return self._alloc(allocation.parse(rest))
        if command not in SPECS:
            raise UsageError(f"unknown command {command!r}; commands: "
                             f"{', '.join(COMMANDS)} (see %rain?)")
        if "-h" in words[1:] or "--help" in words[1:]:
            print(SUMMARIES[command])
            print(SPECS[command].parser.format_help())
            return None
        args = _parse(SPECS[command], rest)
        return getattr(self, f"_{command}")(args)

    # -- commands ------------------------------------------------------------------------------
    def _running(self):
        if self.cluster is not None and not self.cluster.is_running():
            self.cluster.stop()
            self._forget_client()
            self.cluster = None
        return self.cluster

    def _start(self, args):
        for name in ("governors", "cpus"):
            value = getattr(args, name)
            if value is not None and value < 1:
                raise UsageError(f"--{name} must be at least 1. Usage: "
                                 f"{_usage(_start_spec)}")
        for name in ("port", "http_port"):
            value = getattr(args, name)
            if value is not None and not 0 < value < 65536:
                raise UsageError(f"--{name.replace('_', '-')} must be a port number "
                                 f"(1-65535). Usage: {_usage(_start_spec)}")
        if self._running() is not None:
            print(f"A Rain cluster started by this kernel is already running: "
                  f"{self.cluster.describe()}. Use %rain stop first.")
            return None
        if self.client is not None and self.client.connected:
            print(f"Already connected to the Rain server at {self.client.address}:"
                  f"{self.client.port}. Use %rain stop to disconnect first.")
            return None
        from .cluster import NotebookCluster, default_cpus
        cpus = args.cpus or default_cpus(args.governors)
        cluster = NotebookCluster(args.governors, cpus, args.port, args.http_port,
                                  logdir=args.logdir, governor_config=args.governor_config)
        try:
            cluster.start()
        except Exception as exc:
            print(f"Could not start the Rain cluster: {exc}", file=sys.stderr)
            return None
        self.cluster = cluster
        self._bind(cluster.client)
        reprs.cluster_of_client[id(cluster.client)] = cluster
        display(ClusterCard(cluster.client, cluster))
        return None

    def _connect(self, args):
        if self._running() is not None:
            print(f"This kernel runs its own Rain cluster ({self.cluster.describe()}); "
                  "use %rain stop before connecting elsewhere.")
            return None
        address = args.address
        host, _sep, port = address.rpartition(":") if ":" in address else (address, "", "")
        if ":" in address and (not host or not port.isdigit()):
            raise UsageError(f"invalid address {address!r}. Usage: {_usage(_connect_spec)}")
        try:
            client = Client(host, int(port)) if port else Client(address)
        except RainException as exc:
            print(f"Could not connect: {exc}", file=sys.stderr)
            return None
        if self.client is not None:
            self._disconnect()
        if args.dashboard:
            client._rain_dashboard_url = args.dashboard
        self._bind(client)
        display(ClusterCard(client))
        return None

    def _status(self, args):
        if self.client is None:
            print("No Rain cluster: use %rain start or %rain connect HOST[:PORT].")
            return None
        self._running()
        if self.client is None:
            print("The Rain cluster started by this kernel has stopped.")
            return None
        display(self._card())
        return None

    def _card(self):
        return ClusterCard(self.client, self.cluster,
                           allocations=allocation_card.info(self.autoscaler))

    def _alloc(self, args):
        if args.scheduler == "stop":
            if self.autoscaler is None:
                print("No %rain alloc is running.")
                return None
            jobs = len(self.autoscaler.status())
            self._stop_autoscaler()
            print(f"Stopped allocating; cancelled {jobs} batch "
                  f"job{'' if jobs == 1 else 's'}.")
            return None
        if self.client is None or not self.client.connected:
            raise UsageError("%rain alloc needs a cluster: %rain start or "
                             "%rain connect HOST[:PORT] first")
        if self.autoscaler is not None:
            print("%rain alloc is already running here; %rain alloc stop first.")
            return None
        self.autoscaler = allocation.start(args, self.client, self._running())
        print(f"Allocating {args.scheduler} jobs of one node while tasks wait (at most "
              f"{args.max_nodes} at once, time limit {args.time}).")
        display(self._card())
        return None

    def _stop_autoscaler(self):
        scaler, self.autoscaler = self.autoscaler, None
        if scaler is not None:
            scaler.stop()

    def _scale(self, args):
        if args.governors < 0:
            raise UsageError(f"N must be 0 or more. Usage: {_usage(_scale_spec)}")
        if args.timeout < 0:
            raise UsageError(f"--timeout must be 0 or more. Usage: {_usage(_scale_spec)}")
        if self._running() is None:
            raise UsageError("%rain scale works on a cluster started by %rain start "
                             "in this kernel")
        try:
            added, removed, drained = self.cluster.scale(args.governors, args.timeout,
                                                         progress=print)
        except Exception as exc:
            print(f"Scaling failed: {exc}", file=sys.stderr)
            return None
        if added:
            print(f"Added {added} governors.")
        elif removed:
            print(f"Removed {removed} governors" + (
                "." if drained else f" (their tasks did not finish within "
                                    f"{args.timeout:g} s; the server re-runs them elsewhere)."))
        else:
            print(f"The cluster already has {args.governors} governors.")
        display(ClusterCard(self.client, self.cluster))
        return None

    def _stop(self, args):
        self._stop_autoscaler()
        if self.cluster is not None:
            description = self.cluster.describe()
            self._forget_client()
            self.cluster.stop()
            self.cluster = None
            print(f"Stopped the Rain cluster ({description}).")
        elif self.client is not None:
            address = f"{self.client.address}:{self.client.port}"
            self._disconnect()
            print(f"Disconnected from the Rain server at {address}.")
        else:
            print("No Rain cluster to stop.")
        return None

    def _dashboard(self, args):
        url = None
        if self._running() is not None:
            url = self.cluster.dashboard_link
        elif self.client is not None:
            url = getattr(self.client, "_rain_dashboard_url", None)
        if url is None:
            print("No dashboard known: %rain start a cluster, or "
                  "%rain connect HOST[:PORT] --dashboard URL.")
            return None
        if args.inline:
            display(IFrame(url, width="100%", height=args.height))
        else:
            link = escape(url, quote=True)
            display({"text/plain": f"Rain dashboard: {url}",
                     "text/html": f"Rain dashboard: <a href='{link}' target='_blank'>"
                                  f"{link}</a>"}, raw=True)
        return None

    # -- %%rain ---------------------------------------------------------------------------------
    def _cell(self, line, cell):
        __tracebackhide__ = True     # noqa: F841 (IPython leaves this frame out)
        args = _parse(_cell_spec, line)
        client = self._require_client()
        session, created = self._session(client, args.session, self._cell_key(line, cell))
        from .tracker import tracker_for
        tracker_for(session)        # follow the session before anything is submitted
        pending = (len(session._tasks), len(session._dataobjs))
        widget = None
        if not args.no_widget:
            # shown before the cell runs: building and submitting a big graph takes a while
            from .widgets import SessionWidget
            widget = SessionWidget(session, graph=not args.no_graph)
            widget.follow_building(session)
            display(widget)
        try:
            code = self._compile(line, cell)
            with session.bind_only():
                exec(code, self.shell.user_ns)
            if widget is not None:
                widget.follow_submitting(session)
            session.submit()
        except BaseException:
            # a cell that fails adds nothing to the session
            del session._tasks[pending[0]:]
            del session._dataobjs[pending[1]:]
            if widget is not None:
                widget.withdraw()
            if created and not session._submitted_tasks and not session._submitted_objects:
                self._drop_session(session, args.session)
            raise
        finally:
            if widget is not None:
                widget.follow_done()
        self.shell.user_ns["rain_session"] = session
        if widget is not None:
            self.shell.user_ns["rain_widget"] = widget
        return None

    def _compile(self, line, cell):
        """The cell's code, under a file name that IPython's tracebacks (and Rain's "created
        at") show as this cell: ``Cell In[7], line 6``, with its source lines. The magic's
        own line counts as line 1, as the user sees the cell."""
        compiler = self.shell.compile
        filename = compiler.cache(f"%%rain {line}\n{cell}", self._cell_number(compiler))
        return compiler(f"\n{cell}", filename, "exec")

    def _cell_number(self, compiler):
        """The number IPython gave the running cell: that of the innermost calling frame
        in a cell's code (the kernel's counter may already be one ahead)."""
        known = getattr(compiler, "_filename_map", {})
        frame = sys._getframe(1)
        while frame is not None:
            number = known.get(frame.f_code.co_filename)
            if number is not None:
                return number
            frame = frame.f_back
        return self.shell.execution_count

    def _require_client(self):
        self._running()
        client = self.client
        if client is None or not client.connected:
            candidate = self.shell.user_ns.get("rain_client")
            if isinstance(candidate, Client) and candidate.connected:
                return candidate
            raise UsageError("no Rain cluster: use %rain start or %rain connect first")
        return client

    def _session(self, client, name, cell):
        """``(session, created)``: the open session of that name, or a new one.

        Running a cell again starts a fresh session when the open one holds only this
        cell's earlier runs (closing it: its numbers and clock start again); a session
        that other cells or code also use is added to, and the cell says so."""
        from rain.client import session as session_module
        if name is None:
            session = session_module._default_session
        else:
            session = self.named_sessions.get(name)
        if session is not None and (session.closed or session.client is not client):
            session = None
        if session is not None:
            cells = self.session_cells.get(session)
            if cells == {cell}:
                self._close_session(session)
                session = None
            else:
                print(f"Adding to the open session {session.session_id} "
                      f"“{session.name}” ({len(session._submitted_tasks):,} tasks already "
                      "submitted by other cells or code): its progress and time include "
                      "theirs. Close it (rain_session.close()) or name another session "
                      "(%%rain NAME) to start afresh.")
                self.session_cells.setdefault(session, set()).add(cell)
                return session, False
        if name is None:
            session = client.new_session("Default session", default=True)
        else:
            session = self.named_sessions[name] = client.new_session(name)
        self.session_cells[session] = {cell}
        return session, True

    def _cell_key(self, line, cell):
        """What identifies the running cell: the id the notebook front end sends with
        the request (JupyterLab, Notebook 7), else the cell's text."""
        parent = getattr(self.shell, "parent_header", None) or {}
        cell_id = (parent.get("metadata") or {}).get("cellId")
        return ("id", cell_id) if cell_id else ("text", line.strip(), cell)

    def _close_session(self, session):
        self.session_cells.pop(session, None)
        try:
            session.close()
        except Exception:
            logger.debug("closing the session failed", exc_info=True)

    def _drop_session(self, session, name):
        """Close a session made for a cell that failed before submitting anything."""
        if name is not None and self.named_sessions.get(name) is session:
            del self.named_sessions[name]
        self._close_session(session)

    # -- helpers ----------------------------------------------------------------------------------
    def _bind(self, client):
        self.client = client
        self.shell.user_ns["rain_client"] = client

    def _forget_client(self):
        client = self.client
        self.client = None
        self.named_sessions.clear()
        self.session_cells.clear()
        if client is not None:
            reprs.cluster_of_client.pop(id(client), None)
            if self.shell.user_ns.get("rain_client") is client:
                del self.shell.user_ns["rain_client"]

    def _disconnect(self):
        client = self.client
        self._forget_client()
        if client is not None:
            try:
                client.close()
            except Exception:
                logger.debug("closing the client failed", exc_info=True)

    def shutdown(self):
        """Stop what this kernel started (the extension's unload and exit path)."""
        self._stop_autoscaler()
        if self.cluster is not None:
            self._forget_client()
            self.cluster.stop()
            self.cluster = None


RainMagics.rain.__doc__ = help_text()
