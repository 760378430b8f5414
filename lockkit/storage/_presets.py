"""Ready-made stores for common web-app data: sessions, refresh tokens, OAuth clients."""

from __future__ import annotations

import os
from typing import Any

from lockkit.storage._crypto import EncryptionService
from lockkit.storage._store import PersistentStore


class SessionStore(PersistentStore):
    """Web sessions: fire-and-forget saves (``background``), 30-minute expiry by default."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        codec: EncryptionService | None = None,
        ttl: float = 1800.0,
        **options: Any,
    ) -> None:
        super().__init__(path, save="background", codec=codec, ttl=ttl, **options)


class RefreshTokenStore(PersistentStore):
    """OAuth refresh tokens: ``debounced`` saves (1 s), 30-day expiry by default."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        codec: EncryptionService | None = None,
        ttl: float = 30 * 86400.0,
        **options: Any,
    ) -> None:
        super().__init__(path, save="debounced", debounce=options.pop("debounce", 1.0), codec=codec, ttl=ttl, **options)


class ClientStore(PersistentStore):
    """Registered OAuth clients: every change saved before the call returns (``immediate``)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        codec: EncryptionService | None = None,
        ttl: float | None = None,
        **options: Any,
    ) -> None:
        super().__init__(path, save="immediate", codec=codec, ttl=ttl, **options)
