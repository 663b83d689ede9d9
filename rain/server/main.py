"""``rain server``: binds the RPC and HTTP listeners on one loop and runs until stopped."""
import asyncio
import logging
import os
import signal
import sys
import tempfile

from ..auth import cluster_token, remove_token_file, write_token_file
from ..common.address import DEFAULT_HTTP_PORT, DEFAULT_SERVER_PORT, parse_listen_address
from ..common.gc_tuning import tune_gc
from ..common.logs import setup_logging
from ..common.private import private_dir
from ..common.readyfile import write_ready_file
from .connections import HEARTBEAT_TIMEOUT, MAX_SUBMIT_SIZE, RainServer
from .core import UNSCHEDULABLE_TIMEOUT
from .events import EventLog
from ..common.env import env_flag
from .http import listen_http, make_app
from ..statefile import remove_state_file, write_state_file
from ..tls import TlsError, listener_tls, record_of, tls_disabled

logger = logging.getLogger(__name__)


async def serve(listen=None, http_listen=None, logdir=None, ready_file=None, token=None,
                dashboard=None, heartbeat_timeout=HEARTBEAT_TIMEOUT,
                max_submit_size=MAX_SUBMIT_SIZE, unschedulable_timeout=UNSCHEDULABLE_TIMEOUT,
                tls=None):
    """Run a server until SIGINT/SIGTERM; ``token`` None: ``rain.auth.cluster_token()``;
    ``dashboard``: a function giving the dashboard's HTTP handlers for the server;
    ``heartbeat_timeout``: seconds of silence after which a governor is given up;
    ``max_submit_size``: the largest message a client or governor may send;
    ``unschedulable_timeout``: seconds tasks no governor can run wait (0: forever);
    ``tls``: a ``rain.tls.Tls`` for the RPC and HTTP ports (None: plain)."""
    logdir = logdir or tempfile.mkdtemp(prefix="rain-server-")
    if token is None:
        token = cluster_token()
    private_dir(logdir)
    host, port = parse_listen_address(listen or DEFAULT_SERVER_PORT, DEFAULT_SERVER_PORT)
    http_host, http_port = parse_listen_address(http_listen or DEFAULT_HTTP_PORT,
                                                DEFAULT_HTTP_PORT)
    events = EventLog(os.path.join(logdir, "events.db"))
    events.start()
    server = RainServer(events, token=token, test_mode=env_flag("RAIN_TEST_MODE"),
                        debug_mode=env_flag("RAIN_DEBUG_MODE"),
                        heartbeat_timeout=heartbeat_timeout,
                        max_submit_size=max_submit_size,
                        unschedulable_timeout=unschedulable_timeout, tls=tls)
    dashboard_on = not os.environ.get("RAIN_DASHBOARD", "").strip().lower() in (
        "0", "off", "no", "false")
    bound = await server.listen(host, port)
    app = make_app(events, extra=rest_handlers(server) if dashboard_on else (), token=token)
    http_server, http_bound = listen_http(app, http_port, http_host, tls)
    logger.info("server listening on %s:%s, %s on %s:%s, logs in %s%s%s",
                bound[0], bound[1], "https" if tls else "http", http_bound[0], http_bound[1],
                logdir, "" if token else "; authentication is off (RAIN_AUTH=none)",
                f"; TLS with the {tls.describe()}" if tls else "")
    if server.core.debug_mode:
        logger.info("debug mode: the graph invariants are checked after every step")
    token_path = write_token_file(token, str(os.getpid())) if token else None
    state_path = write_state_file(bound[0], bound[1], http_bound[0], http_bound[1], logdir,
                                  token_path, record_of(tls))
    if ready_file:
        write_ready_file(ready_file)
    if dashboard_on and dashboard is not None:
        # The pages need Bokeh (~0.4 s to import): mounted right after the server is
        # ready, so starting a cluster does not wait for it.
        await asyncio.sleep(0)
        app.wildcard_router.add_rules(dashboard(server))
    tune_gc()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    server.stop_event = stop
    await stop.wait()
    logger.info("server stopping")
    http_server.stop()
    server.rpc_server.close()
    events.close()
    remove_state_file(state_path)
    remove_token_file(token_path)


def rest_handlers(server):
    """The REST API's handlers (they need the running server)."""
    from .rest import rest_handlers as make
    return make(server)


def server_tls(args):
    """The server's ``Tls`` from ``--tls-cert/--tls-key/--tls-ca`` (None: plain, also
    with ``--no-tls`` or ``RAIN_TLS=off``)."""
    cert, key = getattr(args, "tls_cert", None), getattr(args, "tls_key", None)
    if getattr(args, "no_tls", False) or tls_disabled() or not (cert or key):
        return None
    return listener_tls(cert, key, getattr(args, "tls_ca", None))


def main(args, dashboard=None):
    try:
        setup_logging(args.logdir, "server", debug=getattr(args, "debug", False))
    except OSError as exc:
        print(f"rain server: cannot use the log directory: {exc}", file=sys.stderr)
        return 1
    try:
        tls = server_tls(args)
    except TlsError as exc:
        logger.error("%s", exc)
        return 2
    try:
        asyncio.run(serve(args.listen, args.http_listen, args.logdir, args.ready_file,
                          dashboard=dashboard,
                          heartbeat_timeout=getattr(args, "heartbeat_timeout",
                                                    HEARTBEAT_TIMEOUT),
                          max_submit_size=getattr(args, "max_submit_size",
                                                  MAX_SUBMIT_SIZE),
                          unschedulable_timeout=getattr(args, "unschedulable_timeout",
                                                        UNSCHEDULABLE_TIMEOUT), tls=tls))
    except OSError as exc:
        logger.error("cannot start the server: %s", exc)
        return 1
    return 0
