"""EncryptionService: AES-256-GCM for bytes and files, with key rotation."""

from __future__ import annotations

import base64
import binascii
import errno
import hashlib
import os
import threading
from collections.abc import Sequence
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from lockkit.exceptions import DecryptionError
from lockkit.files._filelock import FileLock
from lockkit.storage._atomic import atomic_write, read_optional
from lockkit.sync._filemutex import FileMutex, normalize_path

#: The format tag: ``LKE2`` authenticates its header (format tag and key id) as
#: associated data; ``LKE1`` (read only) did not.
MAGIC = b"LKE2"
LEGACY_MAGIC = b"LKE1"
NONCE = 12
KEY_ID = 4
HEADER = len(MAGIC) + KEY_ID + NONCE
TAG = 16


def _key_id(key: bytes) -> bytes:
    return hashlib.sha256(b"lockkit-key-id:" + key).digest()[:KEY_ID]


def file_associated_data(path: str | os.PathLike[str]) -> bytes:
    """The associated data binding a ciphertext to its file's path."""
    return b"lockkit-file:" + normalize_path(path).encode("utf-8", "surrogateescape")


def _decode_key(text: str) -> bytes:
    text = text.strip()
    for decode in (base64.urlsafe_b64decode, base64.b64decode, bytes.fromhex):
        try:
            raw = decode(text + "=" * (-len(text) % 4)) if decode is not bytes.fromhex else bytes.fromhex(text)
        except (binascii.Error, ValueError):
            continue
        if len(raw) == 32:
            return raw
    raise ValueError("a key must be 32 bytes, given as base64 or hex")


class EncryptionService:
    """AES-256-GCM encryption of bytes and files.

    Several keys may be given for rotation: data is encrypted with the first and
    decrypted with whichever key it was written with (each ciphertext names its key by
    a short key id, never the key). A wrong key, a tampered or truncated ciphertext,
    or a file copied over another path raises :class:`~lockkit.exceptions.DecryptionError`, which
    names the file but never the key.

    File operations write with :func:`~lockkit.atomic_write` (a unique temp file per
    write, so concurrent writers never collide) under a per-file
    :class:`~lockkit.sync.FileMutex` (threads) and :class:`~lockkit.FileLock` (processes);
    reads take the same locks in shared mode, so a read never sees a half-written file.

    Args:
        key: One 32-byte key, or a sequence of them (the first encrypts).

    Raises:
        ValueError: A key is not 32 bytes, or no key is given.
    """

    def __init__(self, key: bytes | Sequence[bytes]) -> None:
        keys = [key] if isinstance(key, (bytes, bytearray)) else list(key)
        if not keys:
            raise ValueError("EncryptionService needs at least one key")
        for k in keys:
            if not isinstance(k, (bytes, bytearray)) or len(k) != 32:
                raise ValueError("AES-256 keys must be 32 bytes")
        self._ciphers = [(_key_id(bytes(k)), AESGCM(bytes(k))) for k in keys]
        self._mutex = FileMutex("encryption")
        self._mu = threading.Lock()
        self._counts = {"files_written": 0, "files_read": 0, "failures": 0}
        self._last_error: str | None = None

    # -- keys --------------------------------------------------------------------------

    @staticmethod
    def generate_key() -> bytes:
        """A new random 32-byte key."""
        return AESGCM.generate_key(bit_length=256)

    @staticmethod
    def encode_key(key: bytes) -> str:
        """A key as URL-safe base64 text (for environment variables and key files)."""
        return base64.urlsafe_b64encode(key).decode("ascii")

    @classmethod
    def from_env(cls, name: str = "LOCKKIT_KEY") -> EncryptionService:
        """Keys from an environment variable: base64 or hex, comma-separated for rotation.

        Raises:
            KeyError: The variable is not set (the message names the variable only).
            ValueError: A key is malformed.
        """
        value = os.environ.get(name)
        if not value:
            raise KeyError(f"environment variable {name} is not set")
        return cls([_decode_key(part) for part in value.split(",") if part.strip()])

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> EncryptionService:
        """Keys from a file: one base64 or hex key per line (first encrypts), or 32 raw bytes."""
        with open(path, "rb") as f:
            raw = f.read()
        if len(raw) == 32 and not raw.strip().isalnum():
            return cls(raw)
        lines = [
            line for line in raw.decode("ascii", "replace").splitlines() if line.strip() and not line.startswith("#")
        ]
        return cls([_decode_key(line) for line in lines])

    # -- bytes ---------------------------------------------------------------------------

    def encrypt(self, data: bytes, *, associated_data: bytes = b"") -> bytes:
        """Encrypt ``data`` with the first key (a fresh random nonce each time).

        The format tag and key id are authenticated with the data: changing either
        makes the ciphertext fail to decrypt.
        """
        key_id, cipher = self._ciphers[0]
        nonce = os.urandom(NONCE)
        header = MAGIC + key_id
        return header + nonce + cipher.encrypt(nonce, bytes(data), header + associated_data)

    def decrypt(self, blob: bytes, *, associated_data: bytes = b"", path: str | None = None) -> bytes:
        """Decrypt ``blob`` with the key it names.

        Raises:
            DecryptionError: Wrong key, tampered (header included), truncated or foreign data.
        """
        where = f"{path!r}" if path else "the data"
        magic = blob[: len(MAGIC)]
        if len(blob) < HEADER + TAG or magic not in (MAGIC, LEGACY_MAGIC):
            raise DecryptionError(f"{where} is not lockkit-encrypted data or is truncated", path=path)
        key_id, nonce, body = blob[len(MAGIC) : len(MAGIC) + KEY_ID], blob[len(MAGIC) + KEY_ID : HEADER], blob[HEADER:]
        if magic == MAGIC:
            candidates = [c for kid, c in self._ciphers if kid == key_id]
            aad = blob[: len(MAGIC) + KEY_ID] + associated_data
        else:  # the first format: its header was not authenticated, any key may have written it
            candidates = [c for kid, c in self._ciphers if kid == key_id] or [c for _, c in self._ciphers]
            aad = associated_data
        for cipher in candidates:
            try:
                return cipher.decrypt(nonce, body, aad)
            except InvalidTag:
                continue
        raise DecryptionError(
            f"cannot decrypt {where}: wrong key, or the data was tampered with, truncated or moved from another file",
            path=path,
        )

    # -- files ---------------------------------------------------------------------------

    def encrypt_to_file(self, path: str | os.PathLike[str], data: bytes) -> None:
        """Encrypt ``data`` bound to ``path`` and write it atomically under the file's locks."""
        target = os.path.abspath(os.fspath(path))
        blob = self.encrypt(data, associated_data=file_associated_data(target))
        try:
            with self._mutex.acquire(target), FileLock(target + ".lock"), atomic_write(target, "wb") as f:
                f.write(blob)
        except BaseException as exc:
            self._failed(exc)
            raise
        self._count("files_written")

    def decrypt_from_file(self, path: str | os.PathLike[str]) -> bytes:
        """Read and decrypt a file written by :meth:`encrypt_to_file` (shared locks).

        Raises:
            FileNotFoundError: The file does not exist.
            DecryptionError: Wrong key, tampered, truncated, or copied from another path.
        """
        target = os.path.abspath(os.fspath(path))
        try:
            with self._mutex.acquire(target, shared=True), FileLock(target + ".lock", shared=True):
                blob = read_optional(target)
            if blob is None:
                raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), target)
            data = self.decrypt(blob, associated_data=file_associated_data(target), path=target)
        except BaseException as exc:
            self._failed(exc)
            raise
        self._count("files_read")
        return data

    # -- health --------------------------------------------------------------------------

    def _count(self, what: str) -> None:
        with self._mu:
            self._counts[what] += 1

    def _failed(self, exc: BaseException) -> None:
        with self._mu:
            self._counts["failures"] += 1
            self._last_error = type(exc).__name__

    def get_mutex_metrics(self) -> dict[str, Any]:
        """The per-file :class:`~lockkit.sync.FileMutex` metrics as a dict."""
        m = self._mutex.metrics()
        return {
            "acquisitions": m.overall.acquisitions,
            "contentions": m.overall.contentions,
            "wait_max": m.overall.wait_max,
            "average_wait": m.average_wait,
            "peak_queue": m.overall.peak_queue,
            "files": {
                path: {"acquisitions": s.acquisitions, "contentions": s.contentions, "peak_queue": s.peak_queue}
                for path, s in m.files.items()
            },
        }

    def health_status(self) -> dict[str, Any]:
        """Counts of files written and read, failures, the last error class, mutex metrics."""
        with self._mu:
            status: dict[str, Any] = dict(self._counts)
            status["last_error"] = self._last_error
        status["keys"] = len(self._ciphers)
        status["pending_writes"] = self._mutex.has_pending_operations()
        status["mutex"] = self.get_mutex_metrics()
        return status

    def wait_for_pending_writes(self, timeout: float | None = None) -> bool:
        """Wait until every file operation in flight at the time of the call is done."""
        return self._mutex.wait_for_pending(timeout)

    def __repr__(self) -> str:
        return f"<lockkit.storage.EncryptionService keys={len(self._ciphers)}>"  # never the keys
