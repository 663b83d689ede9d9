"""TLS on loopback: ``rain server --tls-cert ...`` with real governors and clients; every
port speaks TLS, the right peers get in, and each wrong one gets a one-line reason while the
server logs it and keeps serving the others."""
import datetime
import json
import os
import socket
import ssl
import stat
import subprocess
import sys
import time

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from rain.client import Client, blob, tasks
from rain.common.errors import RainException
from rain.tls import Tls, TlsError, fingerprint, make_certificate, pem_fingerprint

BIG = 5 * (1 << 20) + 3       # more than one transfer chunk: the file path, not memory


def write_pair(directory, name, hosts=("127.0.0.1", "localhost")):
    cert, key = make_certificate(list(hosts))
    cert_path, key_path = os.path.join(directory, f"{name}.crt"), \
        os.path.join(directory, f"{name}.key")
    for path, data in ((cert_path, cert), (key_path, key)):
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, 0o600)
    return cert_path, key_path


@pytest.fixture
def certs(tmp_path):
    return write_pair(str(tmp_path), "cluster")


@pytest.fixture
def tls_cluster(make_cluster, certs):
    cert, key = certs
    return make_cluster([1], server_args=["--tls-cert", cert, "--tls-key", key])


def server_log(cluster):
    with open(os.path.join(cluster.logdir, "server.out"), errors="replace") as f:
        return f.read()


def wait_for_log(cluster, text, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in server_log(cluster):
            return
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not in the server log:\n{server_log(cluster)[-3000:]}")


def peer_certificate(port):
    """The DER certificate a TLS handshake on ``port`` shows (any certificate accepted)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:
        with context.wrap_socket(raw) as conn:
            return conn.getpeercert(binary_form=True), conn.version()


def run_pipeline(client):
    """A two-task pipeline whose big result comes from a governor's data port."""
    with client.new_session() as session:
        joined = tasks.Concat((blob(b"a" * BIG), blob(b"b")))
        joined.output.keep()
        session.submit()
        session.wait_all()
        data = joined.output.fetch().get_bytes()
    assert len(data) == BIG + 1 and data.endswith(b"ab")


def governor_data_port(client):
    (governor,) = client.get_server_info()["governors"]
    return int(governor["governor_id"].rsplit(":", 1)[1])


def test_cluster_certificate_is_ec_and_names_its_hosts(tmp_path):
    cert_pem, key_pem = make_certificate(["10.1.2.3", "node1"])
    cert = x509.load_pem_x509_certificate(cert_pem)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["10.1.2.3"]
    assert names.get_values_for_type(x509.DNSName) == ["node1"]
    key = serialization.load_pem_private_key(key_pem, None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)


def test_clients_governors_and_data_ports_speak_tls(tls_cluster, certs):
    """The governor found the certificate and key in the server's record, the client
    pins it from there, and RPC, data and HTTP ports all show that very certificate."""
    with open(certs[0], "rb") as f:
        pin = pem_fingerprint(f.read())
    client = tls_cluster.client()
    run_pipeline(client)
    for port in (tls_cluster.port, tls_cluster.http_port, governor_data_port(client)):
        der, version = peer_certificate(port)
        assert fingerprint(der) == pin, port
        assert version in ("TLSv1.2", "TLSv1.3")
    # HTTPS, verified against the certificate itself; plain HTTP gets no answer.
    url = f"https://127.0.0.1:{tls_cluster.http_port}/events"
    reply = requests.post(url, json={}, headers=tls_cluster.http_headers, verify=certs[0],
                          timeout=30)
    assert reply.status_code == 200, reply.text
    with pytest.raises(requests.ConnectionError):
        requests.post(f"http://127.0.0.1:{tls_cluster.http_port}/events", json={},
                      headers=tls_cluster.http_headers, timeout=30)


def test_the_records_say_https_and_the_fingerprint(tls_cluster, certs):
    from rain.auth import local_server_state
    state = local_server_state("127.0.0.1", tls_cluster.port)
    assert state["dashboard"].startswith("https://")
    with open(certs[0], "rb") as f:
        assert state["tls"]["fingerprint"] == pem_fingerprint(f.read())
    assert state["tls"]["ca"] is None       # self-signed: pinned


def test_a_plain_client_is_refused_with_a_reason(tls_cluster):
    with pytest.raises(RainException, match="closed the connection before answering.*TLS"):
        Client("127.0.0.1", tls_cluster.port, tls=False)
    wait_for_log(tls_cluster, "TLS handshake failed: the peer does not speak TLS")
    run_pipeline(tls_cluster.client())       # the others are still served


def test_a_wrong_pin_is_refused_with_a_reason(tls_cluster, tmp_path):
    other_cert, _key = write_pair(str(tmp_path), "other")
    with pytest.raises(TlsError, match="is not trusted"):
        Client("127.0.0.1", tls_cluster.port, tls=other_cert)
    with open(other_cert, "rb") as f:
        other_pin = pem_fingerprint(f.read())
    with pytest.raises(TlsError, match="not the pinned one"):
        Client("127.0.0.1", tls_cluster.port, tls=f"sha256:{other_pin}")
    wait_for_log(tls_cluster, "closed before its hello")
    run_pipeline(tls_cluster.client())


def test_a_refused_connection_leaves_no_unread_error(tls_cluster, tmp_path, caplog):
    """A client, and a data connection to a governor, refused by the pin check after
    the TCP connection was made: nothing reports an error never retrieved."""
    import asyncio
    import gc
    import logging

    from rain.transfer.peer import DataConnection, TransferError
    other_cert, _key = write_pair(str(tmp_path), "other")
    with open(other_cert, "rb") as f:
        other_pin = pem_fingerprint(f.read())
    data_port = governor_data_port(tls_cluster.client())
    caplog.set_level(logging.ERROR, logger="asyncio")
    with pytest.raises(TlsError, match="not the pinned one"):
        Client("127.0.0.1", tls_cluster.port, tls=f"sha256:{other_pin}")

    async def connect_to_the_data_port():
        conn = DataConnection(f"127.0.0.1:{data_port}", "", Tls(pin=other_pin))
        with pytest.raises(TransferError, match="not the pinned one"):
            await conn.connect()

    asyncio.run(connect_to_the_data_port())
    gc.collect()
    assert "never retrieved" not in caplog.text, caplog.text


def test_a_client_with_only_the_pin_gets_in(tls_cluster, certs, monkeypatch):
    with open(certs[0], "rb") as f:
        pin = pem_fingerprint(f.read())
    monkeypatch.setenv("RAIN_TLS_PIN", ":".join(pin[i:i + 2] for i in range(0, 64, 2)))
    client = Client("127.0.0.1", tls_cluster.port)
    tls_cluster.clients.append(client)
    run_pipeline(client)


def test_a_governor_with_another_certificate_is_refused(tls_cluster, tmp_path):
    other_cert, other_key = write_pair(str(tmp_path), "other")
    with pytest.raises(RuntimeError, match="governor-1 exited with 1") as failed:
        tls_cluster.add_governor(1, ["--tls-cert", other_cert, "--tls-key", other_key])
    assert "is not trusted" in str(failed.value)
    assert "Traceback" not in str(failed.value)
    wait_for_log(tls_cluster, "refused a connection to the RPC port")
    run_pipeline(tls_cluster.client())


def test_a_tls_client_of_a_plain_server_is_told(make_cluster, certs):
    plain = make_cluster([1])
    with pytest.raises(TlsError, match="a server without TLS"):
        Client("127.0.0.1", plain.port, tls=certs[0])
    wait_for_log(plain, "it speaks TLS and this server does not")
    run_pipeline(plain.client())


def test_without_the_certificate_the_token_is_not_enough(tls_cluster, tmp_path):
    """A client that has the token but trusts nothing of the server cannot talk to it;
    nor can a client that trusts the system's CAs only."""
    token = tls_cluster.token
    with pytest.raises(RainException):
        Client("127.0.0.1", tls_cluster.port, token=token, tls=False)
    with pytest.raises(TlsError, match="is not trusted"):
        Client("127.0.0.1", tls_cluster.port, token=token, tls=Tls(ca="system"))


def make_ca_and_leaf(directory):
    """A certificate authority and a certificate for 127.0.0.1 that it signed."""
    now = datetime.datetime.now(datetime.timezone.utc)

    def build(subject, issuer, public_key, signing_key, ca, names=None):
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
                   .public_key(public_key).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(hours=1))
                   .not_valid_after(now + datetime.timedelta(days=2))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None),
                                  critical=True))
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names),
                                            critical=False)
        return builder.sign(signing_key, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test site CA")])
    ca = build(ca_name, ca_name, ca_key.public_key(), ca_key, True)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    import ipaddress
    leaf = build(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "site")]), ca_name,
                 leaf_key.public_key(), ca_key, False,
                 [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    paths = {}
    for name, data in (("ca.crt", ca.public_bytes(serialization.Encoding.PEM)),
                       ("site.crt", leaf.public_bytes(serialization.Encoding.PEM)),
                       ("site.key", leaf_key.private_bytes(
                           serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                           serialization.NoEncryption()))):
        paths[name] = os.path.join(directory, name)
        with open(paths[name], "wb") as f:
            f.write(data)
        os.chmod(paths[name], 0o600)
    return paths


def test_a_site_certificate_is_verified_against_its_ca(make_cluster, tmp_path, monkeypatch):
    paths = make_ca_and_leaf(str(tmp_path))
    site = make_cluster([1], server_args=["--tls-cert", paths["site.crt"], "--tls-key",
                                          paths["site.key"], "--tls-ca", paths["ca.crt"]])
    from rain.auth import local_server_state
    assert local_server_state("127.0.0.1", site.port)["tls"]["ca"] == paths["ca.crt"]
    run_pipeline(site.client())           # found in the record: verified against the CA
    monkeypatch.setenv("RAIN_TLS_CA", paths["ca.crt"])
    client = Client("127.0.0.1", site.port)
    site.clients.append(client)
    run_pipeline(client)
    monkeypatch.delenv("RAIN_TLS_CA")
    # The system's CAs do not know this one, nor does a pin of another certificate.
    with pytest.raises(TlsError, match="is not trusted"):
        Client("127.0.0.1", site.port, tls=Tls(ca="system"))


def test_rain_start_with_a_certificate(tmp_path, certs):
    """``rain start`` hands a given certificate to its server and governors; its
    dashboard link is https, and ``rain stop`` leaves the given files alone."""
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    env = dict(os.environ, RAIN_RUNTIME_DIR=str(runtime))
    from rain_cluster import free_port
    port = free_port()
    start = subprocess.run(
        [sys.executable, "-m", "rain", "start", "--local-governors", "[1]",
         "-l", f"127.0.0.1:{port}", "--http-listen", f"127.0.0.1:{free_port()}",
         "--workdir", str(tmp_path / "work"), "--cluster-id", "tlsstart",
         "--tls-cert", certs[0], "--tls-key", certs[1]],
        env=env, capture_output=True, text=True, timeout=120)
    try:
        assert start.returncode == 0, start.stderr
        assert "dashboard: https://127.0.0.1:" in start.stdout
        assert "tls:" in start.stdout and "pinned sha256:" in start.stdout
        script = (f"from rain.client import Client\n"
                  f"c = Client('127.0.0.1', {port})\n"
                  f"print(c._connection.tls is not None, len(c.get_server_info()['governors']))")
        out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                             text=True, timeout=60)
        assert out.stdout.split() == ["True", "1"], out.stderr
    finally:
        stop = subprocess.run([sys.executable, "-m", "rain", "stop", "tlsstart"], env=env,
                              capture_output=True, text=True, timeout=60)
    assert stop.returncode == 0, stop.stderr
    assert os.path.exists(certs[0]) and os.path.exists(certs[1])


def test_cluster_certificate_files_are_user_only_and_go_with_the_cluster(tmp_path,
                                                                         monkeypatch):
    monkeypatch.setenv("RAIN_RUNTIME_DIR", str(tmp_path / "runtime"))
    (tmp_path / "runtime").mkdir(mode=0o700)
    from rain.tls import make_cluster_certificate, remove_cluster_certificate
    cert, key = make_cluster_certificate("c1", ["127.0.0.1"])
    for path in (cert, key):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    outside = tmp_path / "outside.key"
    outside.write_text("x")
    remove_cluster_certificate((cert, key, str(outside)))
    assert not os.path.exists(cert) and not os.path.exists(key)
    assert outside.exists()            # a record's word never deletes anything elsewhere


def test_rain_tls_off_speaks_plain(tls_cluster, monkeypatch):
    monkeypatch.setenv("RAIN_TLS", "off")
    with pytest.raises(RainException, match="closed the connection before answering"):
        Client("127.0.0.1", tls_cluster.port)
    monkeypatch.delenv("RAIN_TLS")
    assert json.dumps(tls_cluster.client().get_server_info())


@pytest.mark.parametrize("port", ["rpc", "data"])
def test_strangers_cannot_hold_tls_handshakes(tls_cluster, port):
    """Connections that never begin their TLS handshake wait in the room of those that never
    say hello: when too many wait, the oldest go at once (each handshake holds buffers)."""
    from rain.common.waiting_room import MAX_WAITING
    from test_security import _closed_by_peer
    client = tls_cluster.client()
    number = tls_cluster.port if port == "rpc" else governor_data_port(client)
    strangers = [socket.create_connection(("127.0.0.1", number), timeout=30)
                 for _ in range(MAX_WAITING + 20)]
    try:
        assert all(_closed_by_peer(s, 30) for s in strangers[:20])
        # the newest still wait: they went for the room, not for their time
        assert not _closed_by_peer(strangers[-1], 0.2)
        run_pipeline(client)
    finally:
        for s in strangers:
            s.close()
