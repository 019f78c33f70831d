"""Real servers on 127.0.0.1 for the tests: a scripted HTTP server and an SMTP sink.

Both listen on real sockets in background threads, so the code under test goes through its
real client stack (DNS, TCP, redirects, compression, chunking, timeouts, SMTP dialogue).
"""
from __future__ import annotations

import datetime as _dt
import ipaddress
import socket
import ssl
import sys
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Iterable, Union


@dataclass
class Response:
    """What a route answers. `body` may be bytes or an iterable of chunks (sent chunked)."""

    status: int = 200
    body: Union[bytes, Iterable[bytes]] = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0  # sleep before answering (slow servers)


@dataclass(frozen=True)
class Request:
    """A request as the server saw it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    host: str


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _QuietHTTPServer(ThreadingHTTPServer):
    """A client that drops its connection (a killed run, a timeout) is routine here, not a traceback."""

    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


Handler = Callable[[Request], Response]
Route = Union[Response, Handler, list]  # a list is answered in order, the last one repeating


class LoopbackHTTPServer:
    """Threaded HTTP/1.1 server on 127.0.0.1 whose routes each test declares.

    Also counts connections open at once (overall and per Host header), so tests can check
    politeness limits from the server's side.
    """

    def __init__(self, *, tls: tuple[Path, Path] | None = None) -> None:
        """tls=(cert, key): serve HTTPS instead of HTTP (see self_signed_cert)."""
        self.routes: dict[str, Route] = {}
        self.scheme = "https" if tls else "http"
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self.open_connections = 0
        self.max_open_connections = 0
        outer = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes: without TCP_NODELAY every keep-alive response
            # would wait ~40 ms for the client's delayed ACK, as no production server does.
            disable_nagle_algorithm = True

            def setup(self) -> None:
                super().setup()
                outer._connection_opened()

            def finish(self) -> None:
                try:
                    super().finish()
                finally:
                    outer._connection_closed()

            def log_message(self, *args) -> None:  # keep pytest output clean
                pass

            def do_GET(self) -> None:
                outer._serve(self)

            do_POST = do_PUT = do_HEAD = do_GET

        self._server = _QuietHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        if tls:
            self._server.socket = _server_tls_context(tls).wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        # A short poll interval lets stop() return quickly (the default is half a second).
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)

    @property
    def base(self) -> str:
        """Base URL, e.g. http://127.0.0.1:PORT."""
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        """Absolute URL of `path` on this server, optionally under another loopback name."""
        return f"{self.scheme}://{host}:{self.port}{path}"

    def route(self, path: str, answer: Route) -> None:
        """Declare what `path` (without query string) answers."""
        self.routes[path] = answer

    def hits(self, path: str) -> list[Request]:
        """Requests received for `path` (query string ignored)."""
        return [r for r in self.requests if r.path.split("?")[0] == path]

    def start(self) -> "LoopbackHTTPServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "LoopbackHTTPServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _connection_opened(self) -> None:
        with self._lock:
            self.open_connections += 1
            self.max_open_connections = max(self.max_open_connections, self.open_connections)

    def _connection_closed(self) -> None:
        with self._lock:
            self.open_connections -= 1

    def _answer_for(self, request: Request) -> Response:
        route = self.routes.get(request.path.split("?")[0])
        if route is None:
            return Response(404, b"not found", {"Content-Type": "text/plain"})
        if isinstance(route, list):
            with self._lock:
                answer = route.pop(0) if len(route) > 1 else route[0]
        else:
            answer = route
        return answer(request) if callable(answer) else answer

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        request = Request(h.command, h.path, {k.lower(): v for k, v in h.headers.items()}, body,
                          (h.headers.get("Host") or "").split(":")[0])
        with self._lock:
            self.requests.append(request)
        answer = self._answer_for(request)
        if answer.delay_s:
            time.sleep(answer.delay_s)
        try:
            _write(h, answer)
        except (BrokenPipeError, ConnectionResetError):
            h.close_connection = True


def _write(h: BaseHTTPRequestHandler, answer: Response) -> None:
    h.send_response(answer.status)
    headers = {k.lower(): v for k, v in answer.headers.items()}
    for key, value in answer.headers.items():
        h.send_header(key, value)
    if isinstance(answer.body, (bytes, bytearray)):
        if "content-length" not in headers:
            h.send_header("Content-Length", str(len(answer.body)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(answer.body)
        return
    h.send_header("Transfer-Encoding", "chunked")
    h.end_headers()
    for chunk in answer.body:
        h.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        h.wfile.flush()
    h.wfile.write(b"0\r\n\r\n")


class SMTPSink:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 that keeps every message it accepts."""

    def __init__(self, auth: tuple[str, str] | None = None, *, tls: tuple[Path, Path] | None = None,
                 implicit_tls: bool = False, data_replies: list[str] | None = None,
                 on_message: Callable[[EmailMessage], None] | None = None) -> None:
        """tls=(cert, key): STARTTLS, or SMTPS with implicit_tls; data_replies: DATA answers in order, last repeats;
        on_message: called with each accepted message, before the server answers the client."""
        from aiosmtpd.controller import Controller

        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.data_attempts = 0
        self.tls_used: list[bool] = []  # per accepted message: was the session encrypted
        replies = list(data_replies or ["250 OK"])
        sink = self

        class _Handler:
            async def handle_DATA(self, server, session, envelope):
                sink.data_attempts += 1
                reply = replies.pop(0) if len(replies) > 1 else replies[0]
                if reply.startswith("2"):  # only accepted messages are kept
                    sink.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
                    sink.messages.append(message_from_bytes(envelope.original_content or envelope.content,
                                                            policy=policy.default))
                    sink.tls_used.append(server.transport.get_extra_info("ssl_object") is not None)
                    if on_message is not None:
                        on_message(sink.messages[-1])
                return reply

        kwargs = {}
        if auth:
            user, password = auth

            def _authenticator(server, session, envelope, mechanism, auth_data):
                from aiosmtpd.smtp import AuthResult

                ok = auth_data.login.decode() == user and auth_data.password.decode() == password
                # handled=False: aiosmtpd then answers 535 itself; the default (True) leaves the client hanging
                return AuthResult(success=ok, handled=False)

            kwargs = {"authenticator": _authenticator, "auth_require_tls": False}
        if tls:
            kwargs["ssl_context" if implicit_tls else "tls_context"] = _server_tls_context(tls)
        self.port = free_port()
        self._controller = Controller(_Handler(), hostname="127.0.0.1", port=self.port, **kwargs)

    def start(self) -> "SMTPSink":
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def __enter__(self) -> "SMTPSink":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _server_tls_context(tls: tuple[Path, Path]) -> ssl.SSLContext:
    """Server-side TLS context from a (cert, key) pair."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(tls[0]), str(tls[1]))
    return context


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """Write a self-signed certificate for 127.0.0.1/localhost and its key; returns (cert, key) paths.

    The certificate is its own CA, so pointing SSL_CERT_FILE at it makes clients trust it.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "newsmon test loopback")])
    now = _dt.datetime.now(_dt.timezone.utc)
    san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                       x509.DNSName("localhost")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _dt.timedelta(days=1)).not_valid_after(now + _dt.timedelta(days=7))
            .add_extension(san, critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = Path(directory) / "loopback-cert.pem", Path(directory) / "loopback-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class HostileReceiver:
    """A raw TCP receiver on 127.0.0.1 that misbehaves: 'hang' (reads the request, never answers),
    'trickle' (answers one byte every `interval_s`, a full 200 after `trickle_bytes` bytes) or
    'reset' (reads the request, then resets the connection)."""

    def __init__(self, mode: str, interval_s: float = 0.05, trickle_bytes: int = 200) -> None:
        self.mode, self.interval_s, self.trickle_bytes = mode, interval_s, trickle_bytes
        self.connections = 0
        self.bytes_sent = 0
        self._stop = threading.Event()
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.05)
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> "HostileReceiver":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            try:
                conn.recv(65536)
                if self.mode == "reset":
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    return
                if self.mode == "hang":
                    self._stop.wait()
                    return
                head = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n" + b"X-Pad: " + b"." * self.trickle_bytes
                for byte in head:
                    if self._stop.wait(self.interval_s):
                        return
                    conn.sendall(bytes([byte]))
                    self.bytes_sent += 1
                conn.sendall(b"\r\n\r\nok")
            except OSError:
                pass  # the client gave up: what the test wants to see
