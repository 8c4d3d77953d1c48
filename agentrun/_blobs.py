"""Local storage's files: content-addressed blobs, each with the runs that stored it.

A blob is ``<dir>/<first two hex digits>/<name>``; beside it, ``<name>.refs`` lists the
workflows that stored it (one JSON ``[namespace, workflow_id]`` per line) and its
modification time is when it was last stored. Garbage collection decides from these
whether any run can still read the blob (``agentrun._storage_gc``).

A store and a deletion of the same blob exclude each other with an advisory lock on
its ``.refs`` file: a store records its workflow, then writes the blob if it is
missing; a deletion re-reads the record under the lock and deletes nothing that
changed since it was judged. So a blob stored again while it is being collected is
either kept or written anew, never lost.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

__all__ = ["REFS_SUFFIX", "BlobDirectory", "Reference", "StoredBlob"]

REFS_SUFFIX = ".refs"
_TEMPORARY_PREFIX = ".tmp-"


@dataclass(frozen=True, order=True)
class Reference:
    """A workflow that stored a blob: it, and the runs of its tree, may read it."""

    namespace: str
    workflow_id: str


@dataclass(frozen=True)
class StoredBlob:
    """A blob as garbage collection judges it."""

    name: str
    size: int
    references: frozenset[Reference]
    # When a workflow last stored it (the .refs file's mtime); None without a record.
    stored_at: float | None

    @property
    def attributed(self) -> bool:
        """Whether the blob records which workflows stored it (blobs of before: not)."""
        return self.stored_at is not None


class BlobDirectory:
    """The blobs under one directory."""

    def __init__(self, directory: Path) -> None:
        """Blobs under ``directory`` (created on first store)."""
        self.directory = directory

    def path(self, name: str) -> Path:
        """Where blob ``name`` is (whether or not it exists)."""
        return self.directory / name[:2] / name

    def put(self, name: str, data: bytes, reference: Reference | None) -> None:
        """Record ``reference`` for blob ``name`` and write it unless it is there."""
        path = self.path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        with _locked(_refs_path(path)) as refs:
            if reference is not None and reference not in _read_references(refs):
                refs.write(json.dumps([reference.namespace, reference.workflow_id]) + "\n")
                refs.flush()
            os.utime(refs.fileno())
            if not path.exists():
                _write_atomically(path, data)

    def blobs(self) -> Iterator[StoredBlob]:
        """Every blob, with its record."""
        if not self.directory.is_dir():
            return
        for folder in sorted(p for p in self.directory.iterdir() if p.is_dir()):
            for path in sorted(folder.iterdir()):
                if path.name.startswith(_TEMPORARY_PREFIX) or path.name.endswith(REFS_SUFFIX):
                    continue
                with contextlib.suppress(FileNotFoundError):  # collected meanwhile
                    yield self._judged(path)

    def delete_unchanged(self, blob: StoredBlob) -> bool:
        """Delete ``blob`` if its record is still what it was when judged; whether it was."""
        path = self.path(blob.name)
        refs_path = _refs_path(path)
        if not blob.attributed:
            return False
        with _locked(refs_path) as refs:
            if not path.exists():  # another collector was first
                refs_path.unlink(missing_ok=True)
                return False
            if _read_references(refs) != blob.references:
                return False
            if os.fstat(refs.fileno()).st_mtime != blob.stored_at:
                return False
            path.unlink(missing_ok=True)
            refs_path.unlink(missing_ok=True)
        return True

    def _judged(self, path: Path) -> StoredBlob:
        size = path.stat().st_size
        refs_path = _refs_path(path)
        try:
            with refs_path.open("r", encoding="utf-8") as refs:
                stored_at = os.fstat(refs.fileno()).st_mtime
                references = _read_references(refs)
        except FileNotFoundError:
            return StoredBlob(path.name, size, frozenset(), None)
        return StoredBlob(path.name, size, references, stored_at)


def _refs_path(path: Path) -> Path:
    return path.with_name(path.name + REFS_SUFFIX)


@contextlib.contextmanager
def _locked(refs_path: Path) -> Iterator[TextIO]:
    """The ``.refs`` file, open for appending and locked; created if missing.

    A deletion unlinks the file while holding its lock: whoever waited for that lock
    holds an unlinked file, so it opens the path again until the two are the same.
    """
    while True:
        refs = refs_path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(refs.fileno(), fcntl.LOCK_EX)
            try:
                current = os.stat(refs_path)
            except FileNotFoundError:
                current = None
            if current is not None and current.st_ino == os.fstat(refs.fileno()).st_ino:
                yield refs
                return
        finally:
            refs.close()  # closing releases the lock


def _read_references(refs: TextIO) -> frozenset[Reference]:
    refs.seek(0)
    found: set[Reference] = set()
    for line in refs.read().splitlines():
        with contextlib.suppress(ValueError, TypeError):
            namespace, workflow_id = json.loads(line)
            found.add(Reference(str(namespace), str(workflow_id)))
    return frozenset(found)


def _write_atomically(path: Path, data: bytes) -> None:
    # The temporary file sits beside its target: a rename within one directory is
    # atomic, so concurrent writers of the same blob each leave a whole file.
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=_TEMPORARY_PREFIX)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
