"""Stores of computed embeddings, so that no image is encoded twice.

An entry is addressed by three strings: the identity of the model that
computed it (architecture, weights, precision, device, preprocessing), the
kind of encoding (the plain evaluation view, or ``n`` augmented views drawn
with a given seed) and the digest of the image's content. Editing an image,
or swapping a checkpoint file, therefore changes the address instead of
serving stale features.

Two stores exist: one in the process's memory, shared by every featurizer
(and so by every clone ``GridSearchCV`` makes), and one in a folder on
disk. Disk entries carry a checksum of their content and address; an entry
that fails the check (truncated, corrupted, or copied from another address)
is recomputed and rewritten, never used.
"""

import hashlib
import os
import tempfile
import threading
import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np

from sktip.exceptions import EmbeddingCacheWarning

# Beyond this many bytes of embeddings the least recently used entries are
# dropped; ViT-B-32 at 10 views per image fits about 50 000 images.
MEMORY_LIMIT_BYTES = 1 << 30


class MemoryStore:
    """Process-wide least-recently-used store, bounded in bytes."""

    def __init__(self, limit_bytes=MEMORY_LIMIT_BYTES):
        self.limit_bytes = limit_bytes
        self._entries = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, address):
        with self._lock:
            entry = self._entries.get(address)
            if entry is not None:
                self._entries.move_to_end(address)
            return entry

    def put(self, address, features):
        features = np.array(features, dtype=np.float32)
        features.setflags(write=False)
        with self._lock:
            previous = self._entries.pop(address, None)
            if previous is not None:
                self._bytes -= previous.nbytes
            self._entries[address] = features
            self._bytes += features.nbytes
            while self._bytes > self.limit_bytes and self._entries:
                _, dropped = self._entries.popitem(last=False)
                self._bytes -= dropped.nbytes

    def clear(self):
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def __len__(self):
        return len(self._entries)


class DiskStore:
    """One ``.npz`` file per entry below ``location``, checked on read.

    Files are written to a temporary name and renamed into place, so a
    crash never leaves a half-written entry under a valid name. Reading uses
    ``allow_pickle=False``: a file from an untrusted source can at worst be
    rejected, never run code.
    """

    def __init__(self, location):
        self.root = Path(location) / "sktip-embeddings"

    def get(self, address):
        path = self._path(address)
        if not path.is_file():
            return None
        try:
            # Opened here so that the file is closed even when NumPy fails
            # half-way through a damaged archive.
            with open(path, "rb") as file, np.load(file, allow_pickle=False) as entry:
                features = entry["features"]
                checksum = bytes(entry["checksum"])
            valid = features.dtype == np.float32 and checksum == _checksum(
                address, features
            )
        except Exception as exc:  # noqa: BLE001 - any unreadable file is bad
            valid, features = False, exc
        if not valid:
            warnings.warn(
                f"Embedding cache entry {path} is corrupted or belongs to "
                "another image or model; it is ignored and recomputed.",
                EmbeddingCacheWarning,
                stacklevel=2,
            )
            return None
        return features

    def put(self, address, features):
        features = np.ascontiguousarray(features, dtype=np.float32)
        path = self._path(address)
        path.parent.mkdir(parents=True, exist_ok=True)
        checksum = np.frombuffer(_checksum(address, features), dtype=np.uint8)
        handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as file:
                np.savez(file, features=features, checksum=checksum)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def _path(self, address):
        identity, kind, content = address
        return self.root / identity[:32] / kind / content[:2] / f"{content}.npz"


_memory_store = MemoryStore()


def memory_store():
    """The process-wide in-memory store."""
    return _memory_store


def clear_embedding_cache():
    """Forget every embedding kept in this process's memory.

    On-disk caches are left alone; delete their folder to clear them.

    See Also
    --------
    clear_model_cache : Forget the models loaded in this process.

    Examples
    --------
    >>> import sktip
    >>> sktip.clear_embedding_cache()
    """
    _memory_store.clear()


def _checksum(address, features):
    digest = hashlib.blake2b(digest_size=32)
    digest.update("\x00".join(address).encode())
    digest.update(f"{features.shape}".encode())
    digest.update(np.ascontiguousarray(features).tobytes())
    return digest.digest()
