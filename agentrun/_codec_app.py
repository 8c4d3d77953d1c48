"""The codec server's HTTP API: ``/decode``, ``/download`` and ``/encode`` as an ASGI app.

The Web UI and ``temporal ... --codec-endpoint`` POST payloads as JSON
(``{"payloads": [{"metadata": {...}, "data": "<base64>"}]}``) to ``<endpoint>/decode``
and show what comes back; only the last part of the path names the operation, as
Temporal's codec server protocol asks. Every refusal is an HTTP answer naming what was
wrong, and closes the connection:

- a ``Host`` not in the allow-list: 400 (a page on another site that rebinds its DNS
  name to this address must not reach it);
- no valid ``Authorization: Bearer ...``: 401, before anything else is read;
- a ``Content-Type`` other than ``application/json``: 415 (it also makes any
  cross-origin browser request need a CORS preflight, which only the Web UI passes);
- a body over the limit, counted as it arrives whatever ``Content-Length`` says: 413;
  a body that does not arrive in time: 408;
- ``/encode`` unless it was turned on: 403 (it encrypts whatever it is sent).

``/download`` resolves external storage references only, so the Web UI can fetch a large
stored payload when the user asks for it; ``/decode`` resolves them too unless asked
``?preserveStorageRefs=true``. Both as in Temporal's ``external_storage`` sample.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Sequence

import anyio
from google.protobuf import json_format
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.api.sdk.v1 import ExternalStorageReference
from temporalio.converter import (
    JSONProtoPayloadConverter,
    StorageDriver,
    StorageDriverClaim,
    StorageDriverRetrieveContext,
)

from agentrun._codec import CodecError, EncryptionCodec
from agentrun._codec_auth import BearerAuth

__all__ = ["ALLOWED_HEADERS", "DEFAULT_LIMITS", "Limits", "codec_app"]

# What the Web UI sends: its namespace, the user's access token, JSON.
ALLOWED_HEADERS = ("Authorization", "Content-Type", "X-Namespace")
_REFERENCE_TYPE = ExternalStorageReference.DESCRIPTOR.full_name.encode()
_UNAUTHORIZED = "Send 'Authorization: Bearer <token>' (temporal ... --codec-auth 'Bearer <token>')"

Operation = Callable[[list[Payload], Request], Awaitable[list[Payload]]]


@dataclasses.dataclass(frozen=True)
class Limits:
    """How much of the codec server one client may hold.

    Attributes:
        max_body: The largest request body, in bytes. One request carries the payloads
            of one field of one event, each at most Temporal's 2 MiB, base64 in JSON.
        max_connections: Open connections; more are closed at once, and a request
            when this many are open is answered 503.
        idle_timeout: Seconds a connection may take to send a request's line and
            headers, from when it opens or its last answer went out.
        body_timeout: Seconds a request may take to send its body.
    """

    max_body: int = 8 * 1024 * 1024
    max_connections: int = 32
    idle_timeout: int = 10
    body_timeout: float = 30.0


DEFAULT_LIMITS = Limits()


def codec_app(
    codec: EncryptionCodec,
    auth: BearerAuth | None,
    *,
    web_origins: Sequence[str],
    allowed_hosts: Sequence[str],
    storage: StorageDriver | None = None,
    allow_encode: bool = False,
    limits: Limits = DEFAULT_LIMITS,
) -> ASGIApp:
    """The codec server's ASGI app.

    Args:
        codec: Encrypts and decrypts.
        auth: What a request must present; None serves anyone who reaches it.
        web_origins: Browser origins allowed to call (CORS); ``*`` for any.
        allowed_hosts: ``Host`` header values accepted (``*.example.com`` patterns).
        storage: Resolves references to externally stored payloads; None leaves
            references as they are and turns ``/download`` off.
        allow_encode: Serve ``/encode``.
        limits: Body size and time limits.
    """
    endpoint = _PayloadEndpoint(codec, auth, storage, allow_encode, limits)
    app = Starlette(
        routes=[Route("/{path:path}", endpoint.handle, methods=["POST"])],
        middleware=[
            Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts)),
            Middleware(
                CORSMiddleware,
                # Only the Web UI's own origins may read answers in a browser: any
                # other page the user visits must not use this server to decrypt.
                allow_origins=[origin.rstrip("/") for origin in web_origins],
                allow_methods=["POST"],
                allow_headers=list(ALLOWED_HEADERS),
                allow_credentials=True,
            ),
        ],
    )
    return _CloseOnRefusal(app)


class _PayloadEndpoint:
    def __init__(
        self,
        codec: EncryptionCodec,
        auth: BearerAuth | None,
        storage: StorageDriver | None,
        allow_encode: bool,
        limits: Limits,
    ) -> None:
        self._codec = codec
        self._auth = auth
        self._storage = storage
        self._limits = limits
        self._operations: dict[str, Operation] = {"decode": self._decode}
        if storage is not None:
            self._operations["download"] = self._download
        if allow_encode:
            self._operations["encode"] = self._encode

    async def handle(self, request: Request) -> Response:
        """``<any prefix>/<operation>``: payloads in, payloads out."""
        if self._auth is not None and not await self._auth.allows(
            request.headers.get("authorization")
        ):
            raise HTTPException(401, _UNAUTHORIZED, {"WWW-Authenticate": "Bearer"})
        name = request.url.path.rstrip("/").rpartition("/")[2]
        operation = self._operations.get(name)
        if operation is None:
            raise _unavailable(name)
        media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if media_type != "application/json":
            raise HTTPException(415, f"Content-Type {media_type!r}: send application/json")
        body = await _read_body(request, self._limits)
        try:
            payloads = list(json_format.Parse(body, Payloads()).payloads)
            answer = await operation(payloads, request)
        except (json_format.ParseError, RecursionError) as err:
            raise HTTPException(400, f"Expected {{'payloads': [...]}} as JSON: {err}") from None
        except (CodecError, OSError, ValueError) as err:
            # A missing key, a missing or corrupt stored payload: said, not a traceback.
            raise HTTPException(400, str(err)) from None
        body = json_format.MessageToJson(Payloads(payloads=answer)).encode()
        return Response(body, media_type="application/json")

    async def _encode(self, payloads: list[Payload], request: Request) -> list[Payload]:
        return await run_in_threadpool(lambda: [self._codec.encrypt(p) for p in payloads])

    async def _decode(self, payloads: list[Payload], request: Request) -> list[Payload]:
        preserve = request.query_params.get("preserveStorageRefs", "").lower() == "true"
        if self._storage is not None and not preserve:
            payloads = await _retrieved(payloads, self._storage, only_references=False)
        return await run_in_threadpool(lambda: [self._codec.decrypt(p) for p in payloads])

    async def _download(self, payloads: list[Payload], request: Request) -> list[Payload]:
        assert self._storage is not None
        stored = await _retrieved(payloads, self._storage, only_references=True)
        return await run_in_threadpool(lambda: [self._codec.decrypt(p) for p in stored])


def _unavailable(name: str) -> HTTPException:
    if name == "encode":
        # It encrypts anything for anyone: off unless the operator wants it.
        return HTTPException(403, "POST /encode is off: start the codec server with --allow-encode")
    if name == "download":
        return HTTPException(
            404, "POST /download needs the worker's external storage settings (AGENTRUN_STORAGE*)"
        )
    return HTTPException(404, f"No operation {name!r}: use /decode, /download or /encode")


async def _read_body(request: Request, limits: Limits) -> bytes:
    """The body, refused as soon as it passes the limit, whatever ``Content-Length`` says."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limits.max_body:
        raise HTTPException(413, f"A body of {declared} bytes: the limit is {limits.max_body}")
    body = bytearray()
    try:
        with anyio.fail_after(limits.body_timeout):
            async for chunk in request.stream():
                body += chunk
                if len(body) > limits.max_body:
                    raise HTTPException(413, f"A body over the limit of {limits.max_body} bytes")
    except TimeoutError:
        raise HTTPException(408, f"The body did not arrive in {limits.body_timeout:g}s") from None
    except ClientDisconnect:
        raise HTTPException(400, "The client left before sending its body") from None
    return bytes(body)


def _reference(payload: Payload) -> ExternalStorageReference | None:
    metadata = payload.metadata
    if metadata.get("encoding") != b"json/protobuf" or metadata.get("messageType") != (
        _REFERENCE_TYPE
    ):
        return None
    reference = JSONProtoPayloadConverter().from_payload(payload, ExternalStorageReference)
    return reference if isinstance(reference, ExternalStorageReference) else None


async def _retrieved(
    payloads: Sequence[Payload], storage: StorageDriver, *, only_references: bool
) -> list[Payload]:
    """The payloads, with each reference to ``storage`` replaced by what it stored.

    Raises:
        ValueError: ``only_references`` and a payload that is not a reference to it.
    """
    result = list(payloads)
    positions: list[int] = []
    claims: list[StorageDriverClaim] = []
    for position, payload in enumerate(payloads):
        reference = _reference(payload)
        if reference is None or reference.driver_name != storage.name():
            if only_references:
                raise ValueError(
                    f"Payload {position + 1} is not a reference to external storage "
                    f"{storage.name()!r}: /download takes references only, /decode the rest"
                )
            continue
        positions.append(position)
        claims.append(StorageDriverClaim(claim_data=dict(reference.claim_data)))
    if claims:
        stored = await storage.retrieve(StorageDriverRetrieveContext(), claims)
        for position, payload in zip(positions, stored, strict=True):
            result[position] = payload
    return result


class _CloseOnRefusal:
    """Closes the connection after any refusal.

    A client refused before its body was read would otherwise keep the connection and
    go on sending: the server would read and drop that body to reach the next request.
    """

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_closing(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] >= 400:
                headers = [*message.get("headers", []), (b"connection", b"close")]
                message = {**message, "headers": headers}
            await send(message)

        await self._app(scope, receive, send_closing)
