"""An API token manager on lockkit.JsonDocument: an example of a repository built on lockkit.

Tokens are shown once at creation; only their SHA-256 digest is stored, so neither the
file nor any log or error contains a usable token.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from typing import Any

import lockkit


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenManager:
    """Create, verify, list and revoke API tokens stored in one JSON file."""

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self._doc = lockkit.JsonDocument(path, validate=dict, fsync=fsync, timeout=30)

    def create(self, name: str) -> tuple[str, str]:
        """Create a token; returns ``(token_id, secret)``. The secret is not stored."""
        token_id = secrets.token_hex(8)
        secret = f"lk_{token_id}_{secrets.token_urlsafe(24)}"

        def add(tokens: dict[str, Any] | None) -> dict[str, Any]:
            tokens = dict(tokens or {})
            tokens[token_id] = {"name": name, "digest": _digest(secret), "created": time.time(), "revoked": False}
            return tokens

        self._doc.modify(add)
        return token_id, secret

    def revoke(self, token_id: str) -> bool:
        """Revoke a token; ``False`` if unknown or already revoked."""
        changed = []

        def revoke(tokens: dict[str, Any] | None) -> dict[str, Any]:
            tokens = dict(tokens or {})
            entry = tokens.get(token_id)
            if entry is not None and not entry["revoked"]:
                tokens[token_id] = {**entry, "revoked": True}
                changed.append(True)
            return tokens

        self._doc.modify(revoke)
        return bool(changed)

    def verify(self, secret: str) -> bool:
        """Whether ``secret`` is a live (created, not revoked) token."""
        parts = secret.split("_")
        if len(parts) < 3:
            return False
        entry = (self._doc.read() or {}).get(parts[1])
        return bool(entry) and not entry["revoked"] and hmac.compare_digest(entry["digest"], _digest(secret))

    def list(self) -> list[dict[str, Any]]:
        """Every token's id, name, creation time and state (never the secret)."""
        return [
            {"id": tid, "name": e["name"], "created": e["created"], "revoked": e["revoked"]}
            for tid, e in sorted((self._doc.read() or {}).items())
        ]
