"""A codec server: lets the Temporal Web UI and CLI show encrypted payloads.

The UI and ``temporal ... --codec-endpoint`` POST payloads as JSON
(``{"payloads": [{"metadata": {...}, "data": "<base64>"}]}``) to ``<endpoint>/decode``
and show what comes back. Whoever can reach this server reads every payload the key
opens, so it listens on loopback unless told otherwise, and answers browsers only
from the Web UI origins it is given (CORS).

Run it with ``python -m agentrun._codec_server --port 8081 --web-origin
http://localhost:8233``; the keys come from ``AGENTRUN_ENCRYPTION_KEYS`` or
``AGENTRUN_ENCRYPTION_KEY_FILE``, as for the worker. With the worker's external storage
settings too (``AGENTRUN_STORAGE*``), it also resolves the references of payloads that
went to external storage, so the UI shows their content rather than their hash.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.api.sdk.v1 import ExternalStorageReference
from temporalio.converter import (
    JSONProtoPayloadConverter,
    StorageDriver,
    StorageDriverClaim,
    StorageDriverRetrieveContext,
)

from agentrun._codec import KEY_FILE_ENV, KEYS_ENV, CodecError, EncryptionCodec, codec_from_settings
from agentrun._settings import SettingsError, load_settings
from agentrun._storage import StorageConfigError, StorageSettings

__all__ = ["DEFAULT_PORT", "DEFAULT_WEB_ORIGINS", "CodecServer", "main"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8081
# The Web UI of `temporal server start-dev` with its default ports.
DEFAULT_WEB_ORIGINS = ("http://localhost:8233", "http://127.0.0.1:8233")
# A request body larger than this is refused: the UI sends a few payloads at a time.
MAX_BODY = 64 * 1024 * 1024
ALLOWED_HEADERS = "Content-Type, X-Namespace, Authorization"
_REFERENCE_TYPE = ExternalStorageReference.DESCRIPTOR.full_name.encode()

logger = logging.getLogger("agentrun._codec_server")


class CodecServer:
    """``/encode`` and ``/decode`` over HTTP for one codec, in a background thread.

    Example::

        with CodecServer(codec, port=0) as server:
            print(server.url)  # give it to the Web UI or --codec-endpoint
    """

    def __init__(
        self,
        codec: EncryptionCodec,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        web_origins: Sequence[str] = DEFAULT_WEB_ORIGINS,
        storage: StorageDriver | None = None,
    ) -> None:
        """Bind ``host``:``port`` (0 for a free port); nothing is served until ``start``.

        Args:
            codec: Encrypts and decrypts.
            host: The address to listen on.
            port: The port; 0 for a free one.
            web_origins: Browser origins allowed to call (CORS); ``*`` for any.
            storage: Resolves references to externally stored payloads on decode;
                None leaves references as they are.
        """
        origins = frozenset(o.rstrip("/") for o in web_origins)
        handler = _handler_class(codec, origins, storage)
        self._http = ThreadingHTTPServer((host, port), handler)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The endpoint to give the Web UI or ``--codec-endpoint``."""
        host, port = self._http.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        """Serve in a daemon thread."""
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)
        self._thread.start()

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted."""
        self._http.serve_forever()

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self._thread is not None:
            self._http.shutdown()
            self._thread.join()
            self._thread = None
        self._http.server_close()

    def __enter__(self) -> CodecServer:
        """Start serving."""
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop serving."""
        self.stop()


def _handler_class(
    codec: EncryptionCodec, origins: frozenset[str], storage: StorageDriver | None
) -> type[BaseHTTPRequestHandler]:
    def decode(payload: Payload) -> Payload:
        return codec.decrypt(_retrieved(payload, storage) if storage else payload)

    operations: dict[str, Callable[[Payload], Payload]] = {
        "encode": codec.encrypt,
        "decode": decode,
    }

    class Handler(_CodecRequestHandler):
        pass

    Handler.operations = operations
    Handler.origins = origins
    return Handler


def _retrieved(payload: Payload, storage: StorageDriver) -> Payload:
    """The stored payload a reference points to; any other payload as it is."""
    metadata = payload.metadata
    if metadata.get("encoding") != b"json/protobuf" or metadata.get("messageType") != (
        _REFERENCE_TYPE
    ):
        return payload
    reference = JSONProtoPayloadConverter().from_payload(payload, ExternalStorageReference)
    if not isinstance(reference, ExternalStorageReference) or (
        reference.driver_name != storage.name()
    ):
        return payload
    claim = StorageDriverClaim(claim_data=dict(reference.claim_data))
    # Each request runs in its own thread, with no event loop of its own yet.
    [stored] = asyncio.run(storage.retrieve(StorageDriverRetrieveContext(), [claim]))
    return stored


class _CodecRequestHandler(BaseHTTPRequestHandler):
    operations: dict[str, Callable[[Payload], Payload]]
    origins: frozenset[str]
    server_version = "agentrun-codec"

    def do_OPTIONS(self) -> None:
        """A browser's CORS preflight."""
        self._respond(HTTPStatus.NO_CONTENT, b"")

    def do_POST(self) -> None:
        """``<any prefix>/encode`` or ``/decode``: payloads in, payloads out."""
        endpoint = self.path.split("?")[0].rstrip("/").rsplit("/", 1)[-1]
        operation = self.operations.get(endpoint)
        if operation is None:
            self._fail(HTTPStatus.NOT_FOUND, f"No endpoint {self.path!r}: use /encode or /decode")
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._fail(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"Body over {MAX_BODY} bytes")
            return
        try:
            payloads = json_format.Parse(self.rfile.read(length), Payloads())
            answer = Payloads(payloads=[operation(p) for p in payloads.payloads])
        except json_format.ParseError as err:
            self._fail(HTTPStatus.BAD_REQUEST, f"Expected {{'payloads': [...]}} as JSON: {err}")
            return
        except (CodecError, OSError, ValueError) as err:
            # A missing key, a missing or corrupt stored payload: said, not a traceback.
            self._fail(HTTPStatus.BAD_REQUEST, str(err))
            return
        body = json_format.MessageToJson(answer).encode()
        self._respond(HTTPStatus.OK, body, "application/json")

    def _fail(self, status: HTTPStatus, message: str) -> None:
        self._respond(status, message.encode(), "text/plain; charset=utf-8")

    def _respond(self, status: HTTPStatus, body: bytes, content_type: str | None = None) -> None:
        self.send_response(status)
        origin = (self.headers.get("Origin") or "").rstrip("/")
        # Only the Web UI's own origins may read answers in a browser: any other page
        # the user visits must not use this server to decrypt.
        if origin and (origin in self.origins or "*" in self.origins):
            self.send_header("Access-Control-Allow-Origin", origin)
            self.send_header("Access-Control-Allow-Methods", "POST, OPTIONS")
            self.send_header("Access-Control-Allow-Headers", ALLOWED_HEADERS)
            self.send_header("Access-Control-Allow-Credentials", "true")
            self.send_header("Vary", "Origin")
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        logger.info("%s %s", self.address_string(), format % args)


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m agentrun._codec_server",
        description="Decrypt agentrun's payloads for the Temporal Web UI and CLI. "
        f"Keys from {KEYS_ENV} or {KEY_FILE_ENV}.",
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to listen on")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (0: a free one)")
    parser.add_argument(
        "--web-origin",
        action="append",
        dest="web_origins",
        metavar="URL",
        help="a Web UI origin allowed to call from a browser (repeatable; '*' for any); "
        f"default: {', '.join(DEFAULT_WEB_ORIGINS)}",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``python -m agentrun._codec_server``."""
    arguments = _arguments(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        settings = load_settings()
        codec = codec_from_settings(settings)
        storage = StorageSettings.from_settings(settings)
    except (SettingsError, CodecError, StorageConfigError) as err:
        raise SystemExit(f"agentrun codec server: {err}") from None
    if codec is None:
        raise SystemExit(f"agentrun codec server: set {KEYS_ENV} or {KEY_FILE_ENV} to its keys")
    origins = arguments.web_origins or list(DEFAULT_WEB_ORIGINS)
    try:
        server = CodecServer(codec, arguments.host, arguments.port, origins, storage.driver)
    except OSError as err:
        raise SystemExit(
            f"agentrun codec server: cannot listen on {arguments.host}:{arguments.port}: "
            f"{err.strerror}"
        ) from None
    # Printed, not logged: a script starting it on port 0 reads the URL from here.
    print(f"Codec server on {server.url} (key ids: {', '.join(codec.key_ids)})", flush=True)
    print(f"Web UI origins allowed: {', '.join(origins)}", flush=True)
    print(f"External storage: {storage.describe()}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
