"""HTTPS image URLs through urllib3's public connection API (images/fetch.py): the connection
goes to the checked address while TLS sends and verifies the URL's name, and a TLS
handshake that trickles is cut at the download's deadline."""

import contextlib
import datetime
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from {{ cookiecutter.package_name }}.errors import VqlError
from {{ cookiecutter.package_name }}.images.fetch import UrlFetcher

PNG = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes()
LOOPBACK = ("127.0.0.0/8", "::1/128")


def self_signed(folder: Path, name: str) -> tuple[Path, Path]:
    """A key and a self-signed certificate for the DNS name ``name`` (its own CA)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / f"{name}.crt", folder / f"{name}.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


class ImageHandler(BaseHTTPRequestHandler):
    """Answers every GET with a PNG; remembers the Host headers it was sent."""

    hosts: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.hosts.append(self.headers.get("Host", ""))
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(PNG)))
        self.end_headers()
        self.wfile.write(PNG)

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def serve_tls(folder: Path, name: str) -> Iterator[tuple[int, Path, list[str | None]]]:
    """An HTTPS server on 127.0.0.1 with a certificate for ``name``: its port, the
    certificate (to trust) and the server names clients sent (SNI)."""
    cert_file, key_file = self_signed(folder, name)
    names: list[str | None] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    context.sni_callback = lambda _sock, sni, _ctx: names.append(sni)  # type: ignore[assignment,misc]
    server = ThreadingHTTPServer(("127.0.0.1", 0), ImageHandler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    ImageHandler.hosts = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], cert_file, names
    finally:
        server.shutdown()
        server.server_close()


def fetcher(trusted: Path, timeout: float = 5.0) -> UrlFetcher:
    """A fetcher that may reach loopback addresses and trusts ``trusted``."""
    made = UrlFetcher(max_bytes=1 << 20, timeout=timeout, retries=0, allowed_networks=LOOPBACK)
    made.client.session.verify = str(trusted)
    return made


def test_https_reaches_the_checked_address_and_verifies_the_name(tmp_path: Path) -> None:
    """https://localhost:P/ is fetched from a checked loopback address; TLS sent the name
    ``localhost`` (SNI) and verified the certificate (which names no address) against it;
    Host is the name."""
    with serve_tls(tmp_path, "localhost") as (port, cert_file, names):
        url_fetcher = fetcher(cert_file)
        try:
            body = url_fetcher.fetch(f"https://localhost:{port}/a.png")
        finally:
            url_fetcher.close()
    assert bytes(body) == PNG
    assert names == ["localhost"]
    assert ImageHandler.hosts == [f"localhost:{port}"]


def test_a_certificate_of_another_name_is_refused(tmp_path: Path) -> None:
    """A trusted certificate that names another host is refused: the name checked is the
    URL's."""
    with serve_tls(tmp_path, "elsewhere.test") as (port, cert_file, _):
        url_fetcher = fetcher(cert_file)
        try:
            with pytest.raises(VqlError) as error:
                url_fetcher.fetch(f"https://localhost:{port}/a.png")
        finally:
            url_fetcher.close()
    assert error.value.msg == "the URL's TLS certificate cannot be verified"
    assert ImageHandler.hosts == []


@pytest.fixture
def trickling_handshake() -> Iterator[int]:
    """A TCP server that answers a TLS handshake one byte every 0.2 s, for 30 s."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def trickle(conn: socket.socket) -> None:
        record = b"\x16\x03\x03\x40\x00" + b"\x02" * 16384  # a handshake record, slowly
        with conn:
            for byte in record:
                if stop.wait(0.2):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=trickle, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        listener.close()


def test_a_trickling_tls_handshake_is_cut_at_the_deadline(
    trickling_handshake: int, tmp_path: Path
) -> None:
    """Each byte comes well within the socket timeout, but the download's deadline (1 s)
    still ends the handshake (Python bounds a whole handshake by the socket's timeout, which
    the connection caps at the time left)."""
    cert_file, _ = self_signed(tmp_path, "localhost")
    url_fetcher = fetcher(cert_file, timeout=1.0)
    started = time.monotonic()
    try:
        with pytest.raises(VqlError) as error:
            url_fetcher.fetch(f"https://localhost:{trickling_handshake}/a.png")
    finally:
        url_fetcher.close()
    assert time.monotonic() - started < 3.0
    assert error.value.msg == "the download took more than 1 s (IMAGE_URL_TIMEOUT)"
