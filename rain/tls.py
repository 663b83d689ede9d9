"""TLS for clusters that span hosts: certificates, where each process finds them, contexts.

A cluster of one machine listens on loopback and stays plain. A cluster whose governors run
on other hosts speaks TLS on its RPC, governor data and HTTP ports, in one of two modes:

- **Pinned** (what ``rain start`` does by default): a self-signed certificate made for the
  cluster (EC P-256; its names are the addresses the server listens on), kept user-only in
  the runtime directory and handed to the governors with the token. Every governor presents
  it on its data port too. Peers trust exactly that certificate (or its SHA-256
  fingerprint), never a certificate authority, so nothing else can stand in for it.
- **Site certificate** (``--tls-cert/--tls-key``, issued by a CA): verified as browsers do,
  against the system's CAs or a ``--tls-ca`` file, host name included; governors present
  it on their data ports, so it must name their hosts as well (e.g. a wildcard).

Clients and governors of the same user on the same machine find what to trust in the
server's state record (like the token); elsewhere ``RAIN_TLS_CERT`` (the certificate file),
``RAIN_TLS_PIN`` (its fingerprint) or ``RAIN_TLS_CA`` says it. ``RAIN_TLS=off`` speaks
plain TCP.
"""
import asyncio
import datetime
import hashlib
import ipaddress
import logging
import os
import socket
import ssl
import tempfile
from asyncio.sslproto import SSLProtocol

from .common.errors import RainException

logger = logging.getLogger(__name__)

#: Seconds a peer has to finish its TLS handshake (as long as it has for its Hello).
HANDSHAKE_TIMEOUT = 10.0
#: ``ca`` of a site certificate verified against the system's certificate authorities.
SYSTEM_CA = "system"
#: Environment of a governor started as a Slurm step: the cluster certificate and key (PEM),
#: passed the way its token is.
CERT_PEM_ENV = "RAIN_TLS_CERT_PEM"
KEY_PEM_ENV = "RAIN_TLS_KEY_PEM"
#: How long a cluster certificate is valid (a cluster rarely lives a day; a year leaves
#: room for clocks that disagree and for long jobs).
CERT_DAYS = 365


class TlsError(RainException):
    """TLS cannot be set up, or a peer is not the one it should be."""


def tls_disabled(environ=None):
    environ = os.environ if environ is None else environ
    return environ.get("RAIN_TLS", "").strip().lower() in ("off", "0", "no", "false", "none")


# -- certificates ------------------------------------------------------------------------------

def local_names():
    """Names and addresses under which this machine's listeners may be reached."""
    names = {"localhost", "127.0.0.1", "::1", socket.gethostname(), socket.getfqdn()}
    try:
        import psutil
        for addresses in psutil.net_if_addrs().values():
            for address in addresses:
                if address.family in (socket.AF_INET, socket.AF_INET6):
                    names.add(address.address.split("%", 1)[0])
    except Exception:       # an unusual interface must not stop a start
        logger.debug("cannot list the network interfaces", exc_info=True)
    return sorted(n for n in names if n)


def make_certificate(hosts, common_name="rain cluster"):
    """A new self-signed certificate and its key, as ``(cert_pem, key_pem)`` bytes; its
    subject alternative names are ``hosts`` (addresses become IP entries)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    names = []
    for host in dict.fromkeys(hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(subject).issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=CERT_DAYS))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(key, hashes.SHA256()))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert_pem, key_pem


def write_private(path, data):
    """Write ``data`` to a new user-only file (never through a link)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return path


def make_cluster_certificate(name, hosts):
    """Make a cluster's certificate and key in ``<runtime dir>/tls/`` (both 0600);
    return their paths."""
    from .runtime_dir import runtime_dir
    directory = os.path.join(runtime_dir(), "tls")
    os.makedirs(directory, mode=0o700, exist_ok=True)
    cert_pem, key_pem = make_certificate(hosts)
    return (write_private(os.path.join(directory, f"{name}.crt"), cert_pem),
            write_private(os.path.join(directory, f"{name}.key"), key_pem))


def remove_cluster_certificate(paths):
    """Remove a cluster's certificate files, if they are in this user's runtime
    directory (a record names them; nothing elsewhere is ever deleted on its word)."""
    from .runtime_dir import runtime_dir
    directory = os.path.realpath(os.path.join(runtime_dir(), "tls"))
    for path in paths or ():
        if isinstance(path, str) and os.path.dirname(os.path.realpath(path)) == directory:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


def fingerprint(der):
    """The SHA-256 fingerprint of a DER certificate, as lowercase hex."""
    return hashlib.sha256(der).hexdigest()


def normal_pin(text):
    """A fingerprint as people write it (``AB:CD:...``, ``sha256:...``) made comparable."""
    text = text.strip().lower()
    if text.startswith("sha256:"):
        text = text[len("sha256:"):]
    text = text.replace(":", "")
    if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
        raise TlsError(f"invalid certificate fingerprint {text!r}: 64 hex digits (SHA-256) "
                       f"expected")
    return text


def read_pem(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise TlsError(f"cannot read {path}: {exc.strerror or exc}") from None


def pem_fingerprint(cert_pem):
    try:
        der = ssl.PEM_cert_to_DER_cert(cert_pem.decode("ascii", "replace"))
    except ValueError:
        raise TlsError("not a PEM certificate") from None
    return fingerprint(der)


def is_self_signed(cert_pem):
    from cryptography import x509
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        raise TlsError("not a PEM certificate") from None
    return cert.issuer == cert.subject


# -- what a process trusts and presents -------------------------------------------------------

class Tls:
    """The TLS side of one process: what it presents when it listens (``cert``/``key``)
    and how it verifies the peers it connects to: ``ca`` None pins ``cert`` (or ``pin``,
    a fingerprint), ``SYSTEM_CA`` trusts the system's CAs, a path trusts that CA file."""

    def __init__(self, cert=None, key=None, ca=None, pin=None, cert_pem=None, key_pem=None):
        self.cert = cert
        self.key = key
        self.ca = ca
        self._cert_pem = cert_pem if cert_pem is not None else (
            read_pem(cert) if cert else None)
        self._key_pem = key_pem
        if pin:
            self.pin = normal_pin(pin)
        elif ca is None and self._cert_pem is not None:
            self.pin = pem_fingerprint(self._cert_pem)
        else:
            self.pin = None
        if ca is None and self.pin is None:
            raise TlsError("nothing to verify TLS peers with: give a certificate to pin, its "
                           "fingerprint, or a CA")
        self._server_context = None
        self._client_context = None

    @property
    def pinned(self):
        return self.ca is None

    @property
    def can_listen(self):
        return self._cert_pem is not None and (self.key is not None
                                               or self._key_pem is not None)

    def describe(self):
        if self.pinned:
            return f"pinned certificate sha256:{self.pin}"
        return f"certificates of {'the system CAs' if self.ca == SYSTEM_CA else self.ca}"

    # -- contexts ------------------------------------------------------------------------
    def server_context(self):
        if self._server_context is None:
            if not self.can_listen:
                raise TlsError("a TLS listener needs a certificate and its key "
                               "(--tls-cert/--tls-key)")
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            if self.key is not None and self.cert is not None:
                _load_chain(context, self.cert, self.key)
            else:
                with tempfile.TemporaryDirectory(prefix="rain-tls-") as tmp:
                    cert = write_private(os.path.join(tmp, "cert.pem"), self._cert_pem)
                    key = write_private(os.path.join(tmp, "key.pem"), self._key_pem)
                    _load_chain(context, cert, key)
            self._server_context = context
        return self._server_context

    def client_context(self):
        if self._client_context is None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            if not self.pinned:
                if self.ca == SYSTEM_CA:
                    context.load_default_certs()
                else:
                    try:
                        context.load_verify_locations(cafile=self.ca)
                    except (OSError, ssl.SSLError) as exc:
                        raise TlsError(f"cannot use the CA file {self.ca}: {exc}") from None
            else:
                # Pinned: the fingerprint is checked after the handshake (``check``); the
                # certificate, when we have it, is also the only one trusted in it.
                context.check_hostname = False
                if self._cert_pem is not None:
                    context.load_verify_locations(cadata=self._cert_pem.decode("ascii"))
                else:
                    context.verify_mode = ssl.CERT_NONE
            self._client_context = context
        return self._client_context

    def check(self, transport, where):
        """Raise ``TlsError`` unless the peer of ``transport`` showed the pinned
        certificate (after a CA-verified handshake there is nothing left to check)."""
        if not self.pinned:
            return
        sslobj = transport.get_extra_info("ssl_object")
        der = sslobj.getpeercert(binary_form=True) if sslobj is not None else None
        if der is None or fingerprint(der) != self.pin:
            shown = fingerprint(der) if der else "none"
            raise TlsError(f"{where} showed the TLS certificate sha256:{shown}, not the "
                           f"pinned one sha256:{self.pin}")

    # -- asyncio -------------------------------------------------------------------------
    async def connect(self, loop, protocol_factory, host, port, what="the server"):
        """``loop.create_connection`` over TLS to a peer that must pass ``check``."""
        where = f"{what} at {host}:{port}"
        try:
            transport, protocol = await loop.create_connection(
                protocol_factory, host, port, ssl=self.client_context(),
                server_hostname=None if self.pinned else host,
                ssl_handshake_timeout=HANDSHAKE_TIMEOUT)
        except ssl.SSLCertVerificationError as exc:
            raise TlsError(f"{where} is not trusted: {exc.verify_message} (expected "
                           f"{self.describe()})") from None
        except ssl.SSLError as exc:
            raise TlsError(f"TLS handshake with {where} failed: {_reason(exc)}") from None
        except ConnectionRefusedError:
            raise               # nothing listens there: not a TLS matter
        except (ConnectionError, asyncio.TimeoutError):
            raise TlsError(f"TLS handshake with {where} failed: the connection was closed "
                           f"(a server without TLS? then set RAIN_TLS=off)") from None
        try:
            self.check(transport, where)
        except TlsError:
            transport.abort()
            raise
        return transport, protocol

    def listening_protocol(self, app_protocol, what, room=None):
        """The protocol of an accepted plain TCP connection that runs the TLS handshake
        for ``app_protocol`` (for ``loop.create_server`` without ``ssl=``): unlike asyncio's
        own TLS listener, which drops a failed handshake silently, it logs who failed and
        why, and the listener keeps serving the others. ``room``: the listener's
        ``WaitingRoom``, where the handshake waits too (each holds buffers of its own, so
        strangers must not open them by the thousand)."""
        return _LoggedHandshake(asyncio.get_running_loop(), app_protocol,
                                self.server_context(), what, room)


def _load_chain(context, cert, key):
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise TlsError(f"cannot use the certificate {cert} with the key {key}: "
                       f"{getattr(exc, 'reason', None) or exc}") from None


def _reason(exc):
    """A TLS error in words a user can act on."""
    reason = (getattr(exc, "reason", None) or "").upper()
    if reason in ("WRONG_VERSION_NUMBER", "HTTP_REQUEST", "UNKNOWN_PROTOCOL",
                  "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG"):
        return "the peer does not speak TLS"
    if "UNKNOWN_CA" in reason or "BAD_CERTIFICATE" in reason or \
            "CERTIFICATE_UNKNOWN" in reason:
        return "the peer does not trust this certificate (it expects another one)"
    if isinstance(exc, ssl.SSLEOFError) or "EOF" in reason:
        return "the peer closed the connection during the handshake"
    return getattr(exc, "reason", None) or str(exc)


class _LoggedHandshake(SSLProtocol):
    """asyncio's TLS protocol, server side, with failed handshakes logged (one line each)."""

    def __init__(self, loop, app_protocol, context, what, room=None):
        waiter = loop.create_future()
        super().__init__(loop, app_protocol, context, waiter, server_side=True,
                         ssl_handshake_timeout=HANDSHAKE_TIMEOUT)
        self._peer = None
        self._raw = None
        self._what = what
        self._room = room
        waiter.add_done_callback(self._handshake_done)

    @property
    def peer(self):
        return self._peer

    def close(self):
        """Sent away by the waiting room (too many waiting, or too long)."""
        if self._raw is not None:
            self._raw.abort()

    def connection_made(self, transport):
        self._peer = transport.get_extra_info("peername")
        self._raw = transport
        if self._room is not None:
            self._room.enter(self)
        super().connection_made(transport)

    def connection_lost(self, exc):
        if self._room is not None:
            self._room.leave(self)
        super().connection_lost(exc)

    def _handshake_done(self, waiter):
        if self._room is not None:
            self._room.leave(self)
        if waiter.cancelled() or waiter.exception() is None:
            return
        exc = waiter.exception()
        peer = f"{self._peer[0]}:{self._peer[1]}" if self._peer else "a peer"
        if isinstance(exc, ssl.SSLError):
            reason = _reason(exc)
        elif isinstance(exc, (ConnectionError, asyncio.TimeoutError)):
            reason = ("the peer closed the connection or stayed silent (a peer that does not "
                  "trust this certificate closes it)")
        else:
            reason = str(exc) or type(exc).__name__
        logger.warning("refused a connection to the %s from %s: TLS handshake failed: %s",
                       self._what, peer, reason)


# -- where each process finds it ----------------------------------------------------------------

def record_of(tls):
    """What a server's state record says of its TLS (read by ``from_record``)."""
    if tls is None:
        return None
    return {"cert": tls.cert, "key": tls.key, "ca": tls.ca, "fingerprint": tls.pin}


def from_record(record):
    """The ``Tls`` of a state record's ``tls`` entry (None: the server is plain)."""
    if not isinstance(record, dict):
        return None
    cert, key, ca = record.get("cert"), record.get("key"), record.get("ca")
    if not isinstance(cert, str) or not (ca is None or isinstance(ca, str)):
        return None
    key = key if isinstance(key, str) and os.access(key, os.R_OK) else None
    try:
        return Tls(cert=cert, key=key, ca=ca)
    except TlsError as exc:
        logger.warning("cannot use the TLS certificate of a server record: %s", exc)
        return None


def from_environment(environ=None):
    """The ``Tls`` that ``RAIN_TLS_CERT``, ``RAIN_TLS_PIN`` or ``RAIN_TLS_CA`` describe, or
    None when none is set."""
    environ = os.environ if environ is None else environ
    cert = environ.get("RAIN_TLS_CERT", "").strip() or None
    pin = environ.get("RAIN_TLS_PIN", "").strip() or None
    ca = environ.get("RAIN_TLS_CA", "").strip() or None
    if not (cert or pin or ca):
        return None
    return Tls(cert=cert, ca=ca, pin=pin if not ca else None)


def tls_for_server(host, port, environ=None):
    """How to reach the server at ``host:port``: ``RAIN_TLS=off`` plain; else the
    environment's ``RAIN_TLS_*``; else what our own server there recorded; else plain
    (a TLS server then refuses, and the error says what to set)."""
    environ = os.environ if environ is None else environ
    if tls_disabled(environ):
        return None
    tls = from_environment(environ)
    if tls is not None:
        return tls
    from .auth import local_server_state
    state = local_server_state(host, int(port))
    return from_record(state.get("tls")) if state else None


def listener_tls(cert, key, ca=None):
    """The ``Tls`` of a server given ``--tls-cert/--tls-key[/--tls-ca]``: a self-signed
    certificate without a CA is pinned, any other is verified against ``ca`` or the
    system's CAs."""
    if not cert or not key:
        raise TlsError("--tls-cert and --tls-key go together")
    cert, key = os.path.abspath(cert), os.path.abspath(key)
    cert_pem = read_pem(cert)
    if ca is None and not is_self_signed(cert_pem):
        ca = SYSTEM_CA
    if ca not in (None, SYSTEM_CA):
        ca = os.path.abspath(ca)
    tls = Tls(cert=cert, key=key, ca=ca, cert_pem=cert_pem)
    tls.server_context()        # fail now, with the reason, not at the first connection
    return tls


def read_pem_blocks(stream, count):
    """Read ``count`` PEM blocks (certificate, then key) from a text stream, as bytes."""
    blocks = []
    for _ in range(count):
        lines = []
        while True:
            line = stream.readline()
            if not line:
                break
            if not lines and not line.strip():
                continue
            lines.append(line)
            if line.startswith("-----END "):
                break
        if not lines or not lines[-1].startswith("-----END "):
            raise TlsError("standard input ended before the TLS certificate and key")
        blocks.append("".join(lines).encode("ascii"))
    return blocks


def add_tls_arguments(parser, role):
    """The TLS options of ``rain server``, ``rain governor`` (``role`` "governor": the
    files may be ``-``, read from standard input after the token) and ``rain start``."""
    stdin = " ('-': from standard input, after the token)" if role == "governor" else ""
    what = {"server": "the RPC and HTTP ports",
            "governor": "its data port (and to pin, without --tls-ca)",
            "start": "the server and every governor, instead of a certificate made for "
                     "the cluster"}[role]
    parser.add_argument("--tls-cert", metavar="FILE", default=None,
                        help=f"PEM certificate presented on {what}{stdin}")
    parser.add_argument("--tls-key", metavar="FILE", default=None,
                        help=f"PEM private key of --tls-cert{stdin}")
    parser.add_argument("--tls-ca", metavar="FILE", default=None,
                        help="verify peers' certificates against this CA file, or 'system' "
                             "for the system's CAs (default: a self-signed --tls-cert is "
                             "pinned, any other is checked against the system's CAs)")
    parser.add_argument("--no-tls", action="store_true",
                        help="plain TCP even " + (
                            "across hosts (as RAIN_TLS=off); the token then travels in clear "
                            "text" if role == "start" else
                            "when a certificate is found (as RAIN_TLS=off)"))
