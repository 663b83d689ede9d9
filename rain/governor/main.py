"""``rain governor``: registers at a server and serves until the server goes away."""
import asyncio
import logging
import os
import signal
import socket
import sys
import tempfile
import tomllib

from ..auth import TokenFileError, read_token_file, token_for_server
from ..common.gc_tuning import tune_gc
from ..common.address import is_loopback, parse_listen_range, parse_server_address
from ..common.logs import setup_logging
from ..common.private import private_dir
from ..common.readyfile import write_ready_file
from ..common.env import env_flag
from ..tls import (CERT_PEM_ENV, KEY_PEM_ENV, Tls, TlsError, read_pem_blocks, tls_disabled,
                   tls_for_server)
from .governor import Governor
from .logcap import LOG_MAX
from .protect import remove_tree, use_read_only_view
from .workdir import claim_workdir, release_workdir, temp_workdir

logger = logging.getLogger(__name__)



class ConfigError(Exception):
    pass


def parse_cpus(text):
    """``N`` CPUs, or ``-X`` for all detected minus X (at least 1)."""
    detected = os.cpu_count() or 1
    if text is None:
        return detected
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"--cpus: invalid value {text!r}") from None
    if value < 0:
        return max(1, detected + value)
    return value


def free_listen_port(text, default_host="0.0.0.0"):
    """The data listener's address: the host and the ports to try in turn; of a port range,
    those from the first port free now (another governor starting at the same moment may
    take it first: the listener then goes on to the next)."""
    host, ports = parse_listen_range(text, default_host)
    if len(ports) == 1:
        return host, ports
    for i, port in enumerate(ports):
        with socket.socket() as probe:
            try:
                probe.bind((host, port))
            except OSError:
                continue
        return host, list(ports[i:])
    raise ConfigError(f"--listen {text}: no free port in {ports[0]}-{ports[-1]}")


def load_config(path):
    """The governor TOML: ``[executors.NAME] command = "..."``; ``[resources] name = n``."""
    if path is None:
        return {}, {}
    try:
        with open(path, "rb") as f:
            config = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read config {path!r}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML in {path!r}: {exc}") from None
    executors = {}
    for name, section in (config.get("executors") or {}).items():
        if not isinstance(section, dict) or not isinstance(section.get("command"), str):
            raise ConfigError(f"{path}: [executors.{name}] needs a string 'command'")
        executors[name] = section["command"]
    resources = config.get("resources") or {}
    if not isinstance(resources, dict) or not all(
            isinstance(v, (int, float)) and v >= 0 for v in resources.values()):
        raise ConfigError(f"{path}: [resources] must map names to non-negative numbers")
    return executors, resources


def delete_timeout_from_env():
    text = os.environ.get("RAIN_DELETE_LIST_TIMEOUT", "5")
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"RAIN_DELETE_LIST_TIMEOUT: invalid number {text!r}") from None
    return max(0.0, value)


def governor_token(token_file, server_host, server_port):
    if token_file:
        try:
            return read_token_file(token_file)
        except TokenFileError as exc:
            raise ConfigError(str(exc)) from None
    return token_for_server(server_host, server_port)


def governor_tls(args, server_host, server_port, environ=None):
    """The governor's ``Tls``: ``--tls-cert/--tls-key`` (files, or ``-``: PEM blocks on
    standard input after the token, as ``rain start`` sends them over ssh), else the
    certificate and key a Slurm step gets in its environment, else what a server of this
    user on this machine recorded; None: plain TCP. A governor of a TLS cluster presents
    the certificate on its data port, so it needs the key as well."""
    environ = os.environ if environ is None else environ
    if getattr(args, "no_tls", False) or tls_disabled(environ):
        return None
    cert, key = getattr(args, "tls_cert", None), getattr(args, "tls_key", None)
    ca = getattr(args, "tls_ca", None) or environ.get("RAIN_TLS_CA", "").strip() or None
    try:
        if cert or key:
            if not (cert and key):
                raise ConfigError("--tls-cert and --tls-key go together")
            if cert == "-" or key == "-":
                if (cert, key) != ("-", "-"):
                    raise ConfigError("--tls-cert - and --tls-key - go together")
                cert_pem, key_pem = read_pem_blocks(sys.stdin, 2)
                tls = Tls(ca=ca, cert_pem=cert_pem, key_pem=key_pem)
            else:
                tls = Tls(cert=os.path.abspath(cert), key=os.path.abspath(key), ca=ca)
        elif environ.get(CERT_PEM_ENV) and environ.get(KEY_PEM_ENV):
            tls = Tls(ca=ca, cert_pem=environ[CERT_PEM_ENV].encode(),
                      key_pem=environ[KEY_PEM_ENV].encode())
        else:
            tls = tls_for_server(server_host, server_port, environ)
        if tls is not None:
            if not tls.can_listen:
                raise ConfigError("a governor of a TLS cluster presents the cluster's "
                                  "certificate on its data port: give --tls-cert and "
                                  "--tls-key")
            tls.server_context()
    except TlsError as exc:
        raise ConfigError(str(exc)) from None
    return tls


async def run_governor(args):
    server_host, server_port = parse_server_address(args.server_address)
    # Peers reach a governor of a server on loopback on loopback only: listen there.
    listen_host, listen_ports = free_listen_port(
        args.listen or "0", "127.0.0.1" if is_loopback(server_host) else "0.0.0.0")
    cpus = parse_cpus(args.cpus)
    executors, resources = load_config(args.config)
    token = governor_token(getattr(args, "token_file", None), server_host, server_port)
    tls = governor_tls(args, server_host, server_port)
    own_workdir = args.workdir is None
    workdir = args.workdir or temp_workdir()
    claim_workdir(workdir)
    if args.logdir:
        private_dir(args.logdir)
    governor = Governor(cpus=cpus, resources=resources, workdir=workdir,
                        logdir=args.logdir or workdir, executors=executors,
                        delete_timeout=delete_timeout_from_env(),
                        debug_mode=env_flag("RAIN_DEBUG_MODE"),
                        check_threads=env_flag("RAIN_CHECK_THREADS"),
                        log_max=getattr(args, "executor_log_max", None) or LOG_MAX,
                        token=token, tls=tls)
    if use_read_only_view(governor.store.data_dir):
        logger.info("programs see the store %s read-only, each in a mount namespace",
                    governor.store.data_dir)
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result("signal"))
    # SIGUSR1: leave gracefully (finish the running tasks, take no new ones, then exit).
    loop.add_signal_handler(signal.SIGUSR1, governor.drain)
    try:
        await governor.start(server_host, server_port, listen_host, listen_ports)
        tune_gc()
        if args.ready_file:
            write_ready_file(args.ready_file, host=socket.gethostname(), pid=os.getpid(),
                             logdir=governor.logdir, cpus=cpus)
        done, _ = await asyncio.wait([stop, governor.closed],
                                     return_when=asyncio.FIRST_COMPLETED)
        reason = next(iter(done)).result()
        logger.info("governor stopping: %s", reason)
        return 0 if reason in ("signal", "drained") else 1
    finally:
        await governor.close()
        if own_workdir:
            remove_tree(workdir)
        else:
            release_workdir(workdir)


def main(args):
    if args.logdir is None:
        args.logdir = tempfile.mkdtemp(prefix="rain-governor-logs-")
    try:
        setup_logging(args.logdir, "governor")
    except OSError as exc:
        print(f"rain governor: cannot use the log directory: {exc}", file=sys.stderr)
        return 1
    try:
        return asyncio.run(run_governor(args))
    except ConfigError as exc:
        logger.error("%s", exc)
        return 2
    except (OSError, ValueError) as exc:
        logger.error("governor failed: %s", exc)
        return 1
    except Exception as exc:  # the message matters more than the traceback here
        logger.error("governor failed: %s", exc)
        return 1
