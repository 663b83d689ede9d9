"""Parsing of the addresses the command line accepts: ``IP:PORT``, ``IP``, ``PORT``."""
import argparse
import ipaddress

DEFAULT_SERVER_PORT = 7210
DEFAULT_HTTP_PORT = 7222


def parse_listen_address(text, default_port, default_host="0.0.0.0"):
    """Return ``(host, port)``; ValueError with a readable message for bad input."""
    text = str(text).strip()
    if not text:
        raise ValueError("empty address")
    if text.isdigit():
        return default_host, _port(text)
    if text.startswith("["):            # [::1]:port
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
        return host, _port(port) if port else default_port
    if text.count(":") == 1:
        host, port = text.split(":")
        return host or default_host, _port(port)
    return text, default_port


def parse_listen_range(text, default_host="0.0.0.0"):
    """``[IP:]PORT`` or ``[IP:]FIRST-LAST`` (a port range, for firewalled clusters):
    ``(host, [ports])``; ValueError with a readable message for bad input."""
    text = str(text).strip()
    host, sep, ports = text.rpartition(":")
    if not sep:
        host = default_host
    first, dash, last = ports.partition("-")
    if not dash:
        return parse_listen_address(text, 0, default_host)[0], [_port(ports)]
    low, high = _port(first), _port(last)
    if low > high or low == 0:
        raise ValueError(f"invalid port range {ports!r}")
    return host or default_host, list(range(low, high + 1))


def parse_server_address(text, default_port=DEFAULT_SERVER_PORT):
    """``host[:port]`` of a server to connect to."""
    host, port = parse_listen_address(text, default_port, default_host="127.0.0.1")
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    return host, port


def is_loopback(host):
    """Whether ``host`` (a name or an address) is this machine's loopback."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _port(text):
    try:
        port = int(text)
    except ValueError:
        raise ValueError(f"invalid port {text!r}") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} out of range")
    return port


def format_address(host, port):
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def address_arg(text):
    """argparse type of the address flags: checked here so that a bad address is a usage
    error (exit 2) with a clear message, not a traceback from deep inside a process."""
    try:
        parse_listen_address(text, 0)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"invalid address {text!r}: {exc}") from None
    return text
