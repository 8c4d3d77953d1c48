"""Who may use the codec server: the holder of a shared token, or of a JWT it can verify.

Every request carries ``Authorization: Bearer <credential>``. The ``temporal`` CLI sends
it with ``--codec-auth "Bearer <token>"`` (or ``TEMPORAL_CODEC_AUTH``); the Web UI sends
the signed-in user's access token when its codec setting "Pass the user access token"
is on. A shared token suits the CLI and scripts; a UI behind single sign-on passes a JWT
from its identity provider, which this checks against the provider's published keys
(JWKS) and the audience it was issued for, as Temporal's ``encryption_jwt`` sample does.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Sequence
from pathlib import Path

import jwt
from starlette.concurrency import run_in_threadpool

__all__ = ["MIN_TOKEN_LENGTH", "BearerAuth", "CodecAuthError", "read_token_file"]

# A shared token is a password every request presents: too short, it can be guessed.
MIN_TOKEN_LENGTH = 16
# Public-key signatures only. A shared-secret algorithm (HS256) or "none" in a token's
# header must never select how it is checked.
SIGNATURE_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)

logger = logging.getLogger("agentrun._codec_server")


class CodecAuthError(ValueError):
    """The codec server's authentication settings are unusable; the message says why."""


class BearerAuth:
    """Accepts ``Authorization: Bearer <credential>`` for a shared token or a verified JWT.

    Example::

        BearerAuth(["<a long random token>"])
        BearerAuth(jwks_url="https://idp.example/.well-known/jwks.json", audience="temporal-ui")
    """

    def __init__(
        self,
        tokens: Sequence[str] = (),
        *,
        jwks_url: str | None = None,
        audience: str | None = None,
    ) -> None:
        """Accept any of ``tokens``, and JWTs signed by a key of ``jwks_url`` for ``audience``.

        Raises:
            CodecAuthError: neither tokens nor a JWKS, a token under ``MIN_TOKEN_LENGTH``
                characters, or a JWKS without an audience.
        """
        if not tokens and not jwks_url:
            raise CodecAuthError("no token and no JWKS: nothing to check requests against")
        for token in tokens:
            if len(token) < MIN_TOKEN_LENGTH:
                raise CodecAuthError(
                    f"a codec token of {len(token)} characters is too short: use at least "
                    f"{MIN_TOKEN_LENGTH} (e.g. `openssl rand -base64 32`)"
                )
        if jwks_url and not audience:
            raise CodecAuthError(
                "--jwks-url needs --jwt-audience: the audience the Web UI's tokens are "
                "issued for (a token for another service must not open payloads)"
            )
        self._tokens = [token.encode() for token in tokens]
        self._jwks = jwt.PyJWKClient(jwks_url, timeout=10) if jwks_url else None
        self._audience = audience
        self.jwks_url = jwks_url

    def describe(self) -> str:
        """One line for the startup log: what a request must present."""
        kinds = ["a bearer token"] if self._tokens else []
        if self.jwks_url:
            kinds.append(f"a JWT signed by a key of {self.jwks_url} for {self._audience!r}")
        return " or ".join(kinds)

    async def allows(self, authorization: str | None) -> bool:
        """Whether an ``Authorization`` header value grants access."""
        scheme, _, credential = (authorization or "").partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            return False
        presented = credential.encode()
        # Constant time: how long a refusal takes must not tell how much of a token matched.
        if any(hmac.compare_digest(presented, token) for token in self._tokens):
            return True
        # Fetching the JWKS (cached afterwards) is blocking HTTP: off the event loop.
        return self._jwks is not None and await run_in_threadpool(self._verify_jwt, credential)

    def _verify_jwt(self, token: str) -> bool:
        assert self._jwks is not None
        try:
            key = self._jwks.get_signing_key_from_jwt(token)
            if key.algorithm_name not in SIGNATURE_ALGORITHMS:
                raise jwt.InvalidAlgorithmError(f"key algorithm {key.algorithm_name}")
            jwt.decode(
                token,
                key.key,
                algorithms=[key.algorithm_name],
                audience=self._audience,
                options={"require": ["exp", "aud"]},
            )
        except jwt.PyJWTError as err:
            logger.info("JWT refused: %s", err)
            return False
        return True


def read_token_file(path: Path) -> str:
    """The token in ``path``: its whole content, surrounding whitespace removed.

    Raises:
        CodecAuthError: the file cannot be read, or is empty.
    """
    try:
        token = path.read_text().strip()
    except OSError as err:
        raise CodecAuthError(f"token file {path}: cannot read it ({err.strerror})") from None
    if not token:
        raise CodecAuthError(f"token file {path} is empty")
    return token
