"""Cluster tokens: whoever submits tasks runs code as the user who started the cluster, so
a server accepts only clients, governors and HTTP requests that present its token.

A server makes a random token when it starts (or takes ``RAIN_TOKEN``) and keeps it in a
user-only file of the runtime directory, named in its state file; a client or governor on
the same machine, run by the same user, finds it there from the server's address, so
nobody has to copy it. Elsewhere set ``RAIN_TOKEN`` (or pass ``token=``,
``rain governor --token-file``). ``RAIN_AUTH=none`` switches the check off, for closed
networks and tests.
"""
import hmac
import logging
import os
import secrets
import socket
import sys
from urllib.parse import quote

from .runtime_dir import remove_token_file, tokens_dir  # noqa: F401 (remove_token_file: used by others)
from .statefile import list_servers

HTTP_COOKIE_PREFIX = "rain-token-"

logger = logging.getLogger(__name__)


class TokenFileError(Exception):
    """A token file that cannot be used (missing, empty, or readable by others)."""


def auth_enabled(environ=None):
    environ = os.environ if environ is None else environ
    return environ.get("RAIN_AUTH", "").strip().lower() != "none"


def new_token():
    return secrets.token_urlsafe(24)


def cluster_token(environ=None):
    """The token of a cluster started now: ``RAIN_TOKEN``, else a new random one; "" when
    ``RAIN_AUTH=none``."""
    environ = os.environ if environ is None else environ
    if not auth_enabled(environ):
        return ""
    return environ.get("RAIN_TOKEN", "").strip() or new_token()


def with_token(url, token):
    """``url`` as a browser should open it: the first visit trades ``?token=`` for a
    cookie of that server (``rain.server.http``)."""
    if not token:
        return url
    return f"{url}{'&' if '?' in url else '?'}token={quote(token, safe='')}"


def write_token_file(token, name):
    """Write ``token`` to ``<runtime dir>/tokens/<name>.token``, readable by this user only
    (created with mode 0600, never through a link); return the path."""
    path = os.path.join(tokens_dir(), f"{name}.token")
    remove_token_file(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return path


def read_token_file(path):
    """The token in ``path`` (``-``: standard input). A file that others may read is
    refused: its token is no longer a secret."""
    if path == "-":
        token = sys.stdin.readline().strip()
    else:
        try:
            with open(path) as f:
                if os.fstat(f.fileno()).st_mode & 0o077:
                    raise TokenFileError(f"token file {path} is readable by other users "
                                         f"(chmod 600 it)")
                token = f.readline().strip()
        except OSError as exc:
            raise TokenFileError(f"cannot read token file {path}: "
                                 f"{exc.strerror or exc}") from None
    if not token:
        raise TokenFileError(f"token file {path} is empty")
    return token


def _is_local_address(host):
    """Whether ``host`` names this machine (an address we could bind)."""
    if host in ("localhost", "127.0.0.1", "::1", "0.0.0.0", "", socket.gethostname()):
        return True
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return False
    for family, _type, _proto, _name, address in infos:
        try:
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.bind((address[0], 0))
            return True
        except OSError:
            continue
    return False


def local_server_state(host, port):
    """The state record of this user's live server listening on ``host:port`` of this
    machine, or None (also for a server on another machine with the same port)."""
    matches = [state for state in list_servers() if state.get("port") == port]
    if not matches:
        return None
    exact = [state for state in matches if state.get("host") == host]
    if exact:
        return exact[0]
    return matches[0] if _is_local_address(host) else None


def token_for_server(host, port):
    """The token to present to the server at ``host:port``: ``RAIN_TOKEN``, else the token
    file of our own server there, else "" (a server that wants one then says so)."""
    token = os.environ.get("RAIN_TOKEN", "").strip()
    if token:
        return token
    state = local_server_state(host, int(port))
    return token_of(state) if state else ""


def token_of(record):
    """The token in the file a server's state (or a cluster's record) names by
    ``token_path``; "" when it names none or the file cannot be used (then the server
    refuses, and says why)."""
    path = record.get("token_path")
    if not path or not isinstance(path, str):
        return ""
    try:
        return read_token_file(path)
    except TokenFileError as exc:
        logger.warning("%s", exc)
        return ""


def auth_headers(token):
    """The HTTP headers that present ``token`` (none when there is no token)."""
    return {"Authorization": f"token {token}"} if token else {}



def token_matches(expected, presented):
    """Constant-time comparison; an empty ``expected`` accepts everything (auth off)."""
    if not expected:
        return True
    return bool(presented) and hmac.compare_digest(expected.encode(), presented.encode())


def http_token(request, cookie_name):
    """The token an HTTP request presents: ``Authorization: token X`` (or ``Bearer X``),
    the ``token`` query argument, or the cookie set when a browser first used that."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() in ("token", "bearer") and value.strip():
        return value.strip()
    query = request.query_arguments.get("token")
    if query:
        return query[-1].decode("utf-8", "replace")
    cookie = request.cookies.get(cookie_name)
    return cookie.value if cookie is not None else ""


def token_command(args):
    """``rain token [SERVER_ADDR]``: the token of this user's server there, on stdout."""
    from .common.address import parse_server_address
    if args.server_address:
        host, port = parse_server_address(args.server_address)
        state = local_server_state(host, port)
        if state is None:
            print(f"rain token: no Rain server of this user at {host}:{port} on this "
                  f"machine", file=sys.stderr)
            return 1
    else:
        servers = list_servers()
        if len(servers) != 1:
            found = ", ".join(s.get("address", "?") for s in servers) or "none"
            print(f"rain token: name the server (running here: {found})", file=sys.stderr)
            return 1
        state = servers[0]
    if not state.get("token_path") or not isinstance(state["token_path"], str):
        print(f"rain token: the server at {state.get('address')} asks for no token "
              f"(started with RAIN_AUTH=none)", file=sys.stderr)
        return 1
    try:
        print(read_token_file(state["token_path"]))
    except TokenFileError as exc:
        print(f"rain token: {exc}", file=sys.stderr)
        return 1
    return 0
