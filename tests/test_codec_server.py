"""The codec server refuses what an attacker would try, each over a real socket.

Each test serves ``CodecServer`` (uvicorn, in a thread, on a free loopback port) or
runs ``agentrun codec-server``, performs one attack with raw HTTP and checks the
answer a client sees: a status, a closed connection, or a refusal to start.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import http.server
import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from google.protobuf import json_format
from jwt.algorithms import RSAAlgorithm
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.converter import DataConverter

from agentrun._codec import EncryptionCodec
from agentrun._codec_auth import BearerAuth
from agentrun._codec_server import CodecServer, Limits
from agentrun._storage import StorageSettings

ROOT = Path(__file__).resolve().parent.parent
TOKEN = secrets.token_urlsafe(32)
CODEC = EncryptionCodec([("k1", os.urandom(32))])
# Generous: a refusal is expected at once, a hang shows as this timeout.
WAIT = 30.0


@contextmanager
def serving(auth: BearerAuth | None = None, **options: Any) -> Iterator[CodecServer]:
    with CodecServer(CODEC, auth or BearerAuth([TOKEN]), port=0, **options) as server:
        yield server


def address(server: CodecServer) -> tuple[str, int]:
    url = urlsplit(server.url)
    assert url.hostname is not None and url.port is not None
    return url.hostname, url.port


def request(
    path: str = "/decode",
    body: bytes = b'{"payloads": []}',
    *,
    host: str = "127.0.0.1",
    token: str | None = TOKEN,
    content_type: str | None = "application/json",
    headers: tuple[str, ...] = (),
) -> bytes:
    """A raw HTTP/1.1 POST, with ``Content-Length`` unless ``headers`` frame the body."""
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}"]
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    if content_type is not None:
        lines.append(f"Content-Type: {content_type}")
    framed = any(h.lower().startswith(("content-length", "transfer-encoding")) for h in headers)
    if not framed:
        lines.append(f"Content-Length: {len(body)}")
    lines += headers
    return "\r\n".join([*lines, "", ""]).encode() + body


def exchange(server: CodecServer, raw: bytes) -> tuple[int, bytes]:
    """Send ``raw`` on a new connection; the answer's status and body."""
    with socket.create_connection(address(server), timeout=WAIT) as connection:
        connection.sendall(raw)
        response = http.client.HTTPResponse(connection)
        response.begin()
        return response.status, response.read()


def closed_by_server(connection: socket.socket) -> bool:
    """Whether the server closed ``connection`` (EOF or reset) within ``WAIT``."""
    connection.settimeout(WAIT)
    try:
        return connection.recv(1024) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def sealed_json(text: str) -> bytes:
    [plain] = DataConverter.default.payload_converter.to_payloads([text])
    return payloads_json(CODEC.encrypt(plain))


def payloads_json(*payloads: Payload) -> bytes:
    return json_format.MessageToJson(Payloads(payloads=payloads)).encode()


def texts(body: bytes) -> list[str]:
    payloads = json_format.Parse(body, Payloads()).payloads
    return [p.data.decode(errors="replace") for p in payloads]


# --- who may call -------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer ",
        "Bearer not-the-token-at-all-000000000",
        f"Bearer {TOKEN[:-1]}",
        f"Basic {base64.b64encode(TOKEN.encode()).decode()}",
        TOKEN,
    ],
    ids=["none", "empty", "wrong", "truncated", "basic", "no-scheme"],
)
def test_without_the_bearer_token_every_operation_is_refused_401(authorization: str | None):
    headers = () if authorization is None else (f"Authorization: {authorization}",)
    with serving(allow_encode=True) as server:
        for path in ("/decode", "/encode", "/download", "/anything"):
            status, body = exchange(server, request(path, token=None, headers=headers))
            assert status == 401 and b"Authorization: Bearer" in body, path
        status, body = exchange(server, request("/decode", sealed_json("hello")))
    assert status == 200 and texts(body) == ['"hello"']


def test_a_host_header_not_in_the_allow_list_is_refused_400():
    """A page whose DNS name was rebound to 127.0.0.1 sends its own name as Host."""
    with serving() as server:
        port = address(server)[1]
        for host in ("evil.example", f"evil.example:{port}", "127.0.0.2", ""):
            status, body = exchange(server, request(host=host))
            assert status == 400 and b"Invalid host header" in body, host
        for host in ("127.0.0.1", f"localhost:{port}"):
            assert exchange(server, request(host=host))[0] == 200, host
    with serving(allowed_hosts=["codec.internal"]) as server:
        assert exchange(server, request(host="codec.internal"))[0] == 200
        assert exchange(server, request(host="localhost"))[0] == 400


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; b=x"],
)
def test_only_json_is_accepted_415(content_type: str | None):
    """A page on any site may POST these cross-origin without a CORS preflight."""
    with serving() as server:
        status, body = exchange(server, request(content_type=content_type))
        assert status == 415 and b"application/json" in body
        json_utf8 = request(content_type="application/json; charset=utf-8")
        assert exchange(server, json_utf8)[0] == 200


def test_encode_is_refused_unless_turned_on():
    plain = payloads_json(Payload(metadata={"encoding": b"json/plain"}, data=b'"x"'))
    with serving() as server:
        status, body = exchange(server, request("/encode", plain))
    assert status == 403 and b"--allow-encode" in body
    with serving(allow_encode=True) as server:
        status, body = exchange(server, request("/encode", plain))
    [sealed] = json_format.Parse(body, Payloads()).payloads
    assert status == 200 and CODEC.decrypt(sealed).data == b'"x"'


# --- what a request may send --------------------------------------------------------

SMALL = Limits(max_body=64 * 1024)


def test_a_declared_body_over_the_limit_is_refused_413_before_it_is_sent():
    huge = request(headers=(f"Content-Length: {10 * 1024**3}",), body=b"")
    with serving(limits=SMALL) as server:
        status, body = exchange(server, huge)
    assert status == 413 and b"the limit is 65536" in body


def test_a_chunked_body_over_the_limit_is_refused_413_while_it_streams():
    """Without Content-Length, the bytes are counted: the body never ends, yet it is refused."""
    chunk = b"%x\r\n" % (SMALL.max_body + 1) + b"{" * (SMALL.max_body + 1) + b"\r\n"
    endless = request(headers=("Transfer-Encoding: chunked",), body=chunk)
    with serving(limits=SMALL) as server:
        status, body = exchange(server, endless)
    assert status == 413 and b"over the limit" in body


def test_a_body_that_does_not_arrive_is_refused_408():
    partial = request(headers=("Content-Length: 100",), body=b'{"payloads"')
    with serving(limits=Limits(body_timeout=1)) as server:
        status, body = exchange(server, partial)
    assert status == 408 and b"did not arrive" in body


@pytest.mark.parametrize(
    "raw",
    [
        request(headers=("Content-Length: abc",), body=b"{}"),
        request(headers=("Content-Length: -1",), body=b"{}"),
        request(headers=("Content-Length: 2", "Content-Length: 5"), body=b"{}"),
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(64) + b"\r\n\r\n",
        # Headers that never end: refused once 16 KiB are buffered.
        b"POST /decode HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"a" * 20 * 1024,
        request(body=b"[" * 200_000),
        request(body=b'{"payloads": [{"data": "not base64!"}]}'),
    ],
    ids=[
        "length-abc",
        "length-minus-1",
        "two-lengths",
        "tls-hello",
        "endless-headers",
        "deep-json",
        "bad-base64",
    ],
)
def test_a_malformed_request_gets_a_400_answer_and_the_server_carries_on(raw: bytes):
    with serving() as server:
        status, _ = exchange(server, raw)
        assert status == 400
        assert exchange(server, request())[0] == 200


# --- how long and how many ----------------------------------------------------------


def test_connections_that_send_no_whole_request_in_time_are_closed():
    with serving(limits=Limits(idle_timeout=1)) as server:
        silent = socket.create_connection(address(server), timeout=WAIT)
        trickling = socket.create_connection(address(server), timeout=WAIT)
        answered = socket.create_connection(address(server), timeout=WAIT)
        with silent, trickling, answered:
            answered.sendall(request())
            response = http.client.HTTPResponse(answered)
            response.begin()
            assert response.status == 200 and response.getheader("connection") != "close"
            response.read()
            assert closed_by_server(silent)
            assert closed_by_server(answered)
            assert trickled_until_closed(trickling, request())
        assert exchange(server, request())[0] == 200


def trickled_until_closed(connection: socket.socket, raw: bytes) -> bool:
    """Send ``raw`` a byte at a time, each before the last could time out; closed?"""
    connection.settimeout(0.2)
    deadline = time.monotonic() + WAIT
    for byte in raw[:-4]:  # never the blank line that ends the headers
        if time.monotonic() > deadline:
            return False
        try:
            connection.sendall(bytes([byte]))
            if connection.recv(1024) == b"":
                return True
        except TimeoutError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            return True
    return False


def test_connections_beyond_the_limit_are_closed_and_the_server_recovers():
    with serving(limits=Limits(max_connections=4, idle_timeout=60)) as server:
        idle = [socket.create_connection(address(server), timeout=WAIT) for _ in range(4)]
        try:
            with socket.create_connection(address(server), timeout=WAIT) as extra:
                extra.sendall(request())
                assert answer_status(extra) in (None, 503)
        finally:
            for connection in idle:
                connection.close()
        assert eventually_status(server, request()) == 200


def answer_status(connection: socket.socket) -> int | None:
    """The status of the answer on ``connection``; None if it was closed without one."""
    response = http.client.HTTPResponse(connection)
    try:
        response.begin()
    except (http.client.RemoteDisconnected, ConnectionResetError):
        return None
    return response.status


def eventually_status(server: CodecServer, raw: bytes) -> int | None:
    """The first answer other than a refusal for load, within ``WAIT``."""
    deadline = time.monotonic() + WAIT
    status = None
    while time.monotonic() < deadline:
        with socket.create_connection(address(server), timeout=WAIT) as connection:
            connection.sendall(raw)
            status = answer_status(connection)
        if status not in (None, 503):
            return status
        time.sleep(0.1)
    return status


# --- external storage ---------------------------------------------------------------


async def test_download_resolves_a_stored_payload_only_when_asked(tmp_path: Path):
    storage = StorageSettings.local(tmp_path / "blobs", threshold=1024)
    converter = DataConverter(payload_codec=CODEC, external_storage=storage.external_storage())
    text = "stored " + "x" * 4096
    [reference] = await converter.encode([text])
    [inline] = await converter.encode(["inline"])
    assert b"stored" not in reference.data and reference.metadata["encoding"] == b"json/protobuf"

    with serving(storage=storage.driver) as server:
        status, body = exchange(server, request("/download", payloads_json(reference)))
        assert status == 200 and texts(body) == [json.dumps(text)]
        # The Web UI decodes a page keeping references, and downloads on request.
        kept = request("/decode?preserveStorageRefs=true", payloads_json(inline, reference))
        status, body = exchange(server, kept)
        assert status == 200
        assert list(json_format.Parse(body, Payloads()).payloads) == [
            CODEC.decrypt(inline),
            reference,
        ]
        # The temporal CLI decodes without asking: references resolve, as before.
        status, body = exchange(server, request("/decode", payloads_json(inline, reference)))
        assert status == 200 and texts(body) == ['"inline"', json.dumps(text)]
        status, body = exchange(server, request("/download", payloads_json(inline)))
        assert status == 400 and b"references only" in body
    with serving() as server:
        status, body = exchange(server, request("/download", payloads_json(reference)))
    assert status == 404 and b"AGENTRUN_STORAGE" in body


# --- JWTs from the Web UI -----------------------------------------------------------

AUDIENCE = "temporal-web-ui"


@contextmanager
def jwks_server(jwks: dict[str, Any]) -> Iterator[str]:
    """An identity provider's JWKS endpoint, over HTTP on loopback; its URL."""
    document = json.dumps(jwks).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(document)))
            self.end_headers()
            self.wfile.write(document)

        def log_message(self, format: str, *args: object) -> None:
            pass

    provider = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=provider.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{provider.server_address[1]}/.well-known/jwks.json"
    finally:
        provider.shutdown()
        provider.server_close()
        thread.join()


def compact_jwt(claims: dict[str, Any], algorithm: str, sign: Any) -> str:
    """A JWT put together by hand, as a forger would, signed by ``sign(signing_input)``."""

    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = {"alg": algorithm, "kid": "idp-1", "typ": "JWT"}
    signing_input = f"{part(json.dumps(header).encode())}.{part(json.dumps(claims).encode())}"
    return f"{signing_input}.{part(sign(signing_input.encode()))}"


def test_a_jwt_from_the_web_ui_opens_payloads_only_when_the_jwks_verifies_it():
    signer = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = RSAAlgorithm.to_jwk(signer.public_key(), as_dict=True)
    jwks = {"keys": [{**public, "kid": "idp-1", "alg": "RS256", "use": "sig"}]}
    now = int(time.time())
    claims = {"sub": "user@example.com", "aud": AUDIENCE, "exp": now + 600}

    def token(key: Any = signer, **changes: Any) -> str:
        body = {k: v for k, v in {**claims, **changes}.items() if v is not None}
        return jwt.encode(body, key, algorithm="RS256", headers={"kid": "idp-1"})

    public_pem = signer.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    forged = {
        "another audience": token(aud="another-service"),
        "expired": token(exp=now - 60),
        "no expiry": token(exp=None),
        "no audience": token(aud=None),
        "another key": token(key=stranger),
        # The public key as an HMAC secret: the classic algorithm confusion.
        "HS256 with the public key": compact_jwt(
            claims, "HS256", lambda data: hmac.new(public_pem, data, hashlib.sha256).digest()
        ),
        "unsigned": compact_jwt(claims, "none", lambda data: b""),
    }
    with jwks_server(jwks) as url:
        auth = BearerAuth([TOKEN], jwks_url=url, audience=AUDIENCE)
        with serving(auth) as server:
            assert exchange(server, request(token=token()))[0] == 200
            assert exchange(server, request(token=TOKEN))[0] == 200
            for name, bad in forged.items():
                assert exchange(server, request(token=bad))[0] == 401, name


# --- starting it --------------------------------------------------------------------


def codec_server_command(*options: str, token: str | None = None) -> subprocess.Popen[str]:
    """``agentrun codec-server --port 0 ...`` with a key, and ``token`` if given."""
    variables = {k: v for k, v in os.environ.items() if k != "AGENTRUN_CODEC_TOKEN"}
    variables["AGENTRUN_ENCRYPTION_KEYS"] = f"k1:{base64.b64encode(os.urandom(32)).decode()}"
    variables["AGENTRUN_STORAGE"] = "off"
    if token is not None:
        variables["AGENTRUN_CODEC_TOKEN"] = token
    command = [sys.executable, "-m", "agentrun.cli", "codec-server", "--port", "0", *options]
    return subprocess.Popen(
        command, cwd=ROOT, env=variables, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@pytest.mark.parametrize(
    ("options", "token", "expected"),
    [
        ((), None, "refusing to serve without authentication: set AGENTRUN_CODEC_TOKEN"),
        (("--no-auth", "--host", "0.0.0.0"), None, "listens on loopback only"),
        ((), "short", "a codec token of 5 characters is too short"),
        (("--no-auth",), TOKEN, "--no-auth with a token"),
        (("--jwks-url", "http://127.0.0.1:1/jwks"), None, "--jwks-url needs --jwt-audience"),
        (("--allowed-host", "codec*.internal"), TOKEN, "expected a name, or '*.example.com'"),
    ],
    # Named, not drawn from the random token: parallel workers collect the same ids.
    ids=["no-token", "not-loopback", "short-token", "no-auth-and-token", "jwks-alone", "bad-host"],
)
def test_the_cli_refuses_to_serve_without_authentication_in_one_line(
    options: tuple[str, ...], token: str | None, expected: str
):
    process = codec_server_command(*options, token=token)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode != 0 and stdout == ""
    assert stderr.startswith("agentrun codec server: ") and stderr.count("\n") == 1
    assert expected in stderr, stderr


def test_the_cli_serves_without_a_token_on_loopback_when_told_to():
    process = codec_server_command("--no-auth")
    try:
        assert process.stdout is not None
        first, second = process.stdout.readline(), process.stdout.readline()
        assert first.startswith("Codec server on http://127.0.0.1:"), first
        assert second.startswith("Requests must present: nothing (--no-auth)"), second
        url = urlsplit(first.split()[3])
        assert url.hostname is not None and url.port is not None
        with socket.create_connection((url.hostname, url.port), timeout=WAIT) as connection:
            connection.sendall(request(token=None))
            assert answer_status(connection) == 200
    finally:
        process.kill()
        process.communicate()
