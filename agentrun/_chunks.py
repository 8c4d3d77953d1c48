"""Where a stored payload is cut, so that what many payloads share is stored once.

A run's thread travels in many payloads: the input of each child forked from it, the
``thread`` query's answer each turn reads, the input of a continue-as-new. Each is one
JSON document that differs from the others only at its ends (the child's prompt, the
newest messages). Stored whole, a 1 MB thread forked to 20 children is 20 MB; cut into
chunks at message boundaries chosen by their content alone, the same messages make
the same chunks in every payload, and content-addressed storage keeps each chunk once.

A cut falls just before a message object (``{"role":"``: inside a JSON string the
quotes are escaped, so the bytes only occur where a message begins), at least
``MIN_CHUNK`` after the previous cut, where a hash of the message's first bytes says
so; once two payloads cut at the same message, every later cut matches too. A payload
with no message in it (an encrypted one, a tool result) stays whole: it would share
nothing.
"""

from __future__ import annotations

import hashlib

__all__ = ["MAX_CHUNK", "MIN_CHUNK", "cuts"]

MESSAGE_START = b'{"role":"'
MIN_CHUNK = 64 * 1024
MAX_CHUNK = 1024 * 1024
# About one message boundary in four past MIN_CHUNK is a cut: chunks of a few messages.
_CUT_MASK = 3
_HASHED = 128


def cuts(data: bytes) -> list[int]:
    """The offsets at which ``data``'s chunks after the first begin (empty: one chunk)."""
    offsets: list[int] = []
    start = 0
    first = data.find(MESSAGE_START)
    if first == -1:
        return offsets
    # A payload's head (its encoding, the input's fields before ``messages``) differs
    # between payloads of the same thread: it is a chunk of its own.
    if 0 < first < MIN_CHUNK and len(data) - first > MIN_CHUNK:
        offsets.append(first)
        start = first
    while len(data) - start > MIN_CHUNK:
        cut = _next_cut(data, start)
        if cut >= len(data):
            break
        offsets.append(cut)
        start = cut
    return offsets


def _next_cut(data: bytes, start: int) -> int:
    limit = start + MAX_CHUNK
    found = data.find(MESSAGE_START, start + MIN_CHUNK, limit)
    last = -1
    while found != -1:
        if _chosen(data[found : found + _HASHED]):
            return found
        last = found
        found = data.find(MESSAGE_START, found + 1, limit)
    if len(data) <= limit:
        return len(data)
    return last if last != -1 else limit


def _chosen(message_start: bytes) -> bool:
    """Whether a cut falls before the message that starts so: its content decides."""
    return hashlib.blake2b(message_start, digest_size=1).digest()[0] & _CUT_MASK == 0
