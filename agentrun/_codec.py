"""Encryption at rest: an AES-GCM payload codec with key ids, for rotation.

With it on, every payload agentrun writes (workflow inputs, threads, checkpoints,
events, results, Web UI summaries, failure messages) reaches Temporal encrypted;
only processes holding the key read them. Keys come from the environment:

- ``AGENTRUN_ENCRYPTION_KEYS``: ``kid1:<base64 key>,kid2:<base64 key>``. The first
  key encrypts; every key decrypts, so a new key goes first and old ones stay
  until no open run needs them.
- ``AGENTRUN_ENCRYPTION_KEY_FILE``: a file with the same entries, one per line or
  comma-separated (``#`` starts a comment). Used when the variable is unset.

The payload format (``binary/encrypted``, ``encryption-key-id`` metadata, a 12-byte
nonce before the ciphertext) is the one of Temporal's encryption samples, so their
codec servers in other languages can read it with the same key.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Mapping, Sequence

from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

from agentrun._settings import AgentRunSettings
from agentrun._storage_guard import unreadable_payload

__all__ = [
    "CodecError",
    "EncryptionCodec",
    "codec_from_settings",
    "generate_key",
    "parse_keys",
    "tolerant_codec",
]

KEYS_ENV = "AGENTRUN_ENCRYPTION_KEYS"
KEY_FILE_ENV = "AGENTRUN_ENCRYPTION_KEY_FILE"
ENCODING = b"binary/encrypted"
KEY_ID_METADATA = "encryption-key-id"
NONCE_BYTES = 12
_KEY_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class CodecError(ValueError):
    """A key is missing, malformed or wrong; the message says which (never the key)."""


class EncryptionCodec(PayloadCodec):
    """AES-GCM over each whole payload (its metadata too), tagged with the key id."""

    def __init__(self, keys: Mapping[str, bytes] | Sequence[tuple[str, bytes]]) -> None:
        """Encrypt with the first key; decrypt with any.

        Args:
            keys: Key id to key (16, 24 or 32 bytes), in order; at least one.

        Raises:
            CodecError: no key, a bad key id or a key of the wrong length.
        """
        # Imported here: the ``crypto`` extra is needed only when encryption is on.
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        pairs = list(keys.items()) if isinstance(keys, Mapping) else list(keys)
        if not pairs:
            raise CodecError("No encryption key: give at least one 'kid:base64key'")
        self._ciphers: dict[str, AESGCM] = {}
        for key_id, key in pairs:
            _check_key(key_id, key)
            self._ciphers.setdefault(key_id, AESGCM(key))
        self.key_id = pairs[0][0]

    @property
    def key_ids(self) -> list[str]:
        """The key ids this codec decrypts, the encrypting one first."""
        return list(self._ciphers)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Encrypt every payload with the first key."""
        return [self.encrypt(payload) for payload in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Decrypt encrypted payloads; others (written before encryption) pass through.

        Raises:
            CodecError: a payload's key id is not configured, or it does not decrypt.
        """
        return [self.decrypt(payload) for payload in payloads]

    def encrypt(self, payload: Payload) -> Payload:
        """One payload, encrypted with the first key."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[self.key_id].encrypt(nonce, payload.SerializeToString(), None)
        return Payload(
            metadata={"encoding": ENCODING, KEY_ID_METADATA: self.key_id.encode()},
            data=nonce + sealed,
        )

    def decrypt(self, payload: Payload) -> Payload:
        """One payload, decrypted if it is encrypted."""
        if payload.metadata.get("encoding") != ENCODING:
            return payload
        key_id = payload.metadata.get(KEY_ID_METADATA, b"").decode(errors="replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise CodecError(
                f"Payload encrypted with key id {key_id!r}, which is not configured "
                f"(configured: {', '.join(self._ciphers)}); add it to {KEYS_ENV} "
                f"or {KEY_FILE_ENV}"
            )
        from cryptography.exceptions import InvalidTag

        try:
            plain = cipher.decrypt(payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:], None)
        except InvalidTag:
            raise CodecError(
                f"Payload encrypted with key id {key_id!r} does not decrypt with the "
                "configured key of that id: a different key under the same id, or "
                "altered data"
            ) from None
        return Payload.FromString(plain)


class _TolerantCodec(PayloadCodec):
    """A worker's codec: a payload no configured key opens reads as an unreadable
    payload (``agentrun._storage_guard``) instead of failing the workflow task, which
    Temporal would retry forever. Any client of the namespace can send one."""

    def __init__(self, codec: EncryptionCodec) -> None:
        self.codec = codec

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return await self.codec.encode(payloads)

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._decrypt(payload) for payload in payloads]

    def _decrypt(self, payload: Payload) -> Payload:
        try:
            return self.codec.decrypt(payload)
        except CodecError as err:
            return unreadable_payload(str(err))


def tolerant_codec(codec: PayloadCodec | None) -> PayloadCodec | None:
    """``codec`` as a worker decodes with it: agentrun's encryption codec reads a
    payload it can never open as an unreadable payload; any other codec is unchanged
    (its errors may pass, such as a key service that is down)."""
    return _TolerantCodec(codec) if isinstance(codec, EncryptionCodec) else codec


def _check_key(key_id: str, key: bytes) -> None:
    if not _KEY_ID.match(key_id):
        raise CodecError(
            f"Encryption key id {key_id!r} is not valid: use 1-64 letters, digits, '.', '_' or '-'"
        )
    if len(key) not in (16, 24, 32):
        raise CodecError(
            f"Encryption key {key_id!r} is {len(key)} bytes: AES-GCM needs 16, 24 or 32 "
            "(32 recommended), base64-encoded"
        )


def parse_keys(text: str, source: str = KEYS_ENV) -> list[tuple[str, bytes]]:
    """``kid:base64key`` entries separated by commas or newlines, in order.

    Raises:
        CodecError: an entry is malformed; the message names the source and the key
            id, never the key.
    """
    entries = [e.strip() for line in text.splitlines() for e in line.split("#")[0].split(",")]
    keys: list[tuple[str, bytes]] = []
    for number, entry in enumerate((e for e in entries if e), start=1):
        key_id, colon, encoded = entry.partition(":")
        if not colon:
            raise CodecError(f"{source}: entry {number} is not 'kid:base64key'")
        try:
            key = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise CodecError(f"{source}: the key of {key_id.strip()!r} is not base64") from None
        keys.append((key_id.strip(), key))
    if not keys:
        raise CodecError(f"{source} has no key: expected 'kid:base64key[,kid2:base64key...]'")
    return keys


def codec_from_settings(settings: AgentRunSettings) -> EncryptionCodec | None:
    """The codec ``AGENTRUN_ENCRYPTION_KEYS`` or ``AGENTRUN_ENCRYPTION_KEY_FILE`` sets; None if off.

    Raises:
        CodecError: the keys are malformed, the file is unreadable, or the ``crypto``
            extra is not installed.
    """
    keys_text = settings.encryption_keys.get_secret_value() if settings.encryption_keys else ""
    text, source = keys_text, KEYS_ENV
    key_file = settings.encryption_key_file
    if not text.strip() and key_file is not None:
        source = f"{KEY_FILE_ENV} ({key_file})"
        try:
            text = key_file.expanduser().read_text()
        except OSError as err:
            raise CodecError(f"{source}: cannot read it: {err.strerror}") from None
    if not text.strip():
        return None
    keys = parse_keys(text, source)
    try:
        return EncryptionCodec(keys)
    except ImportError:
        raise CodecError(
            f"{source} is set but 'cryptography' is not installed: pip install 'agentrun[crypto]'"
        ) from None


def generate_key(key_id: str) -> str:
    """A new ``kid:base64key`` entry with a random 256-bit key."""
    _check_key(key_id, bytes(32))
    return f"{key_id}:{base64.b64encode(os.urandom(32)).decode()}"
