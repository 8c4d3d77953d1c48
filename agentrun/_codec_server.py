"""A codec server: lets the Temporal Web UI and CLI show encrypted payloads.

Whoever can use it reads every payload the key opens. So it asks every request for a
bearer token or a JWT (``agentrun._codec_auth``), listens on loopback unless told
otherwise, accepts only the ``Host`` names and browser origins it is given, and bounds
what one client may hold (``agentrun._codec_app`` has the API and its refusals). It is
an ASGI app served by uvicorn over h11, with two guards uvicorn lacks (see
``_GuardedH11Protocol``).

Run it with ``agentrun codec-server --port 8081`` (or ``python -m
agentrun._codec_server``); the keys come from ``AGENTRUN_ENCRYPTION_KEYS`` or
``AGENTRUN_ENCRYPTION_KEY_FILE`` as for the worker, the token from
``AGENTRUN_CODEC_TOKEN`` or ``--token-file``. With the worker's external storage
settings too (``AGENTRUN_STORAGE*``), it resolves the references of payloads that went
to external storage.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import h11
import uvicorn
from temporalio.converter import StorageDriver
from uvicorn.protocols.http.h11_impl import H11Protocol

from agentrun._codec import KEY_FILE_ENV, KEYS_ENV, CodecError, EncryptionCodec, codec_from_settings
from agentrun._codec_app import DEFAULT_LIMITS, Limits, codec_app
from agentrun._codec_auth import BearerAuth, CodecAuthError, read_token_file
from agentrun._settings import AgentRunSettings, load_settings
from agentrun._storage import StorageSettings

__all__ = ["DEFAULT_PORT", "DEFAULT_WEB_ORIGINS", "TOKEN_ENV", "CodecServer", "Limits", "main"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8081
# The Web UI of `temporal server start-dev` with its default ports.
DEFAULT_WEB_ORIGINS = ("http://localhost:8233", "http://127.0.0.1:8233")
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
TOKEN_ENV = "AGENTRUN_CODEC_TOKEN"
# A request line and headers still incomplete past this many bytes get a 400 (h11).
MAX_HEADER_BYTES = 16 * 1024
NO_AUTH = (
    f"refusing to serve without authentication: set {TOKEN_ENV} or --token-file to a "
    "long random token (clients send 'Authorization: Bearer <token>'), or --jwks-url "
    "and --jwt-audience for the Web UI's access tokens; --no-auth serves anyone who "
    "reaches it, on loopback only"
)

logger = logging.getLogger("agentrun._codec_server")


def is_loopback(host: str) -> bool:
    """Whether ``host`` is an address (or the name) of this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def default_allowed_hosts(host: str) -> list[str]:
    """The ``Host`` names to accept by default: loopback names, and ``host`` if specific."""
    specific = [] if host in ("", "0.0.0.0", "::") else [host]
    return list(dict.fromkeys([*LOOPBACK_NAMES, *specific]))


class CodecServer:
    """The codec server on one port, in a background thread or in this one.

    Example::

        with CodecServer(codec, BearerAuth([token]), port=0) as server:
            print(server.url)  # give it to the Web UI or --codec-endpoint
    """

    def __init__(
        self,
        codec: EncryptionCodec,
        auth: BearerAuth | None,
        *,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        web_origins: Sequence[str] = DEFAULT_WEB_ORIGINS,
        allowed_hosts: Sequence[str] | None = None,
        storage: StorageDriver | None = None,
        allow_encode: bool = False,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        """Bind ``host``:``port`` (0 for a free port); nothing is served until ``start``.

        Args:
            codec: Encrypts and decrypts.
            auth: What each request must present; None (``--no-auth``) only on loopback.
            host: The address to listen on.
            port: The port; 0 for a free one.
            web_origins: Browser origins allowed to call (CORS); ``*`` for any.
            allowed_hosts: ``Host`` header values accepted; default
                ``default_allowed_hosts(host)``.
            storage: Resolves references to externally stored payloads (``/decode``,
                ``/download``); None leaves references as they are.
            allow_encode: Serve ``/encode``, which encrypts whatever it is sent.
            limits: Body size, connections and timeouts.

        Raises:
            CodecAuthError: no ``auth`` on an address other than loopback.
            ValueError: an allowed host that is neither a name nor ``*.domain``.
            OSError: the address cannot be bound.
        """
        if auth is None and not is_loopback(host):
            raise CodecAuthError(
                f"without authentication (--no-auth) the codec server listens on loopback "
                f"only ({', '.join(LOOPBACK_NAMES)}), not {host!r}"
            )
        self.allowed_hosts = list(allowed_hosts or default_allowed_hosts(host))
        for pattern in self.allowed_hosts:
            _check_host_pattern(pattern)
        app = codec_app(
            codec,
            auth,
            web_origins=web_origins,
            allowed_hosts=self.allowed_hosts,
            storage=storage,
            allow_encode=allow_encode,
            limits=limits,
        )
        config = uvicorn.Config(
            app,
            loop="asyncio",
            http=_GuardedH11Protocol,
            ws="none",
            lifespan="off",
            log_config=None,
            # Nothing sits in front of it whose X-Forwarded-* headers it should believe.
            proxy_headers=False,
            server_header=False,
            limit_concurrency=limits.max_connections,
            timeout_keep_alive=limits.idle_timeout,
            timeout_graceful_shutdown=5,
            h11_max_incomplete_event_size=MAX_HEADER_BYTES,
            backlog=128,
        )
        self._server = uvicorn.Server(config)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._socket = socket.create_server((host, port), family=family, backlog=128)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The endpoint to give the Web UI or ``--codec-endpoint``."""
        host, port = self._socket.getsockname()[:2]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def start(self) -> None:
        """Serve in a daemon thread; return once it accepts connections."""
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("The codec server did not start: see its log")
            time.sleep(0.01)

    def serve_forever(self) -> None:
        """Serve in this thread until stopped (or, in the main thread, SIGINT or SIGTERM)."""
        self._server.run(sockets=[self._socket])

    def stop(self) -> None:
        """Stop serving and release the port."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._socket.close()

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


def _check_host_pattern(pattern: str) -> None:
    wildcard = pattern == "*" or pattern.startswith("*.")
    if "*" in (pattern[2:] if wildcard else pattern):
        raise ValueError(f"allowed host {pattern!r}: expected a name, or '*.example.com'")


class _GuardedH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, with a cap on connections and a deadline for headers.

    uvicorn answers 503 past ``limit_concurrency`` only once a request arrives, and
    times out a connection only while it is idle after an answer: one that connects and
    sends nothing, or a byte of headers at a time, would be held open for ever.
    """

    _headers_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Accept the connection, unless too many are open; start its headers' clock."""
        super().connection_made(transport)
        limit = self.limit_concurrency
        if limit is not None and len(self.connections) > limit:
            logger.warning("Closed a connection from %s: %d are open", self.client, limit)
            transport.close()
            return
        self._start_headers_deadline()

    def on_response_complete(self) -> None:
        """An answer went out: the next request's headers have the same time."""
        super().on_response_complete()
        self._start_headers_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the deadline with the connection."""
        if self._headers_deadline is not None:
            self._headers_deadline.cancel()
        super().connection_lost(exc)

    def _start_headers_deadline(self) -> None:
        if self._headers_deadline is not None:
            self._headers_deadline.cancel()
        self._headers_deadline = self.loop.call_later(
            self.timeout_keep_alive, self._headers_deadline_passed
        )

    def _headers_deadline_passed(self) -> None:
        # IDLE: no whole request line and headers since the clock started. (A request
        # under way is bounded by the app's body timeout instead.)
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            logger.info("Closed a connection from %s: no request in time", self.client)
            self.transport.close()


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m agentrun._codec_server",
        description="Decrypt agentrun's payloads for the Temporal Web UI and CLI. "
        f"Keys from {KEYS_ENV} or {KEY_FILE_ENV}; the token from {TOKEN_ENV} or --token-file.",
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
    parser.add_argument(
        "--allowed-host",
        action="append",
        dest="allowed_hosts",
        metavar="NAME",
        help="a Host header value to accept (repeatable; '*.example.com' patterns); "
        "default: the loopback names and --host",
    )
    parser.add_argument("--token-file", type=Path, help=f"a file holding the token ({TOKEN_ENV})")
    parser.add_argument("--jwks-url", help="accept JWTs signed by a key of this JWKS")
    parser.add_argument("--jwt-audience", help="the audience those JWTs must be issued for")
    parser.add_argument(
        "--no-auth", action="store_true", help="serve without a token: loopback only"
    )
    parser.add_argument(
        "--allow-encode", action="store_true", help="serve /encode (encrypts what it is sent)"
    )
    return parser.parse_args(argv)


def _auth(arguments: argparse.Namespace, settings: AgentRunSettings) -> BearerAuth | None:
    """What requests must present, from the options and ``AGENTRUN_CODEC_TOKEN``."""
    if arguments.token_file is not None:
        tokens = [read_token_file(arguments.token_file)]
    elif settings.codec_token is not None:
        tokens = [settings.codec_token.get_secret_value().strip()]
    else:
        tokens = []
    if arguments.no_auth:
        if tokens or arguments.jwks_url:
            raise CodecAuthError(f"--no-auth with a token ({TOKEN_ENV}, --token-file) or a JWKS")
        return None
    if not tokens and not arguments.jwks_url:
        raise CodecAuthError(NO_AUTH)
    return BearerAuth(tokens, jwks_url=arguments.jwks_url, audience=arguments.jwt_audience)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``agentrun codec-server`` and ``python -m agentrun._codec_server``."""
    arguments = _arguments(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        settings = load_settings()
        codec = codec_from_settings(settings)
        storage = StorageSettings.from_settings(settings)
        if codec is None:
            raise CodecError(f"set {KEYS_ENV} or {KEY_FILE_ENV} to its keys")
        auth = _auth(arguments, settings)
        origins = arguments.web_origins or list(DEFAULT_WEB_ORIGINS)
        server = CodecServer(
            codec,
            auth,
            host=arguments.host,
            port=arguments.port,
            web_origins=origins,
            allowed_hosts=arguments.allowed_hosts,
            storage=storage.driver,
            allow_encode=arguments.allow_encode,
        )
    except ValueError as err:
        # SettingsError, CodecError, StorageConfigError, CodecAuthError, a bad --allowed-host.
        raise SystemExit(f"agentrun codec server: {err}") from None
    except OSError as err:
        raise SystemExit(
            f"agentrun codec server: cannot listen on {arguments.host}:{arguments.port}: "
            f"{err.strerror}"
        ) from None
    # Printed, not logged: a script starting it on port 0 reads the URL from here.
    print(f"Codec server on {server.url} (key ids: {', '.join(codec.key_ids)})", flush=True)
    who = auth.describe() if auth else "nothing (--no-auth): anyone who reaches it"
    print(f"Requests must present: {who}", flush=True)
    print(f"Web UI origins allowed: {', '.join(origins)}", flush=True)
    print(f"Host names allowed: {', '.join(server.allowed_hosts)}", flush=True)
    encode = "on" if arguments.allow_encode else "off (--allow-encode turns it on)"
    print(f"/encode: {encode}", flush=True)
    print(f"External storage: {storage.describe()}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
