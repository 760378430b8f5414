"""A command queue repository on lockkit.JsonDocument: an example of a repository built on lockkit.

Every command is one read-modify-write under the document's exclusive lock, so no
command is lost when threads and worker processes change the queue at once.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import lockkit


class QueueRepository:
    """An ordered queue of items (dicts with an ``id``) kept in one JSON file."""

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self._doc = lockkit.JsonDocument(path, validate=dict, fsync=fsync, timeout=30)

    @staticmethod
    def _items(queue: dict[str, Any] | None) -> list[dict[str, Any]]:
        return [] if queue is None else list(queue.get("items", []))

    def add(self, item: dict[str, Any]) -> str:
        """Append an item; returns its new id."""
        item_id = uuid.uuid4().hex
        self._doc.modify(lambda q: {"items": [*self._items(q), {**item, "id": item_id}]})
        return item_id

    def update(self, item_id: str, **changes: Any) -> bool:
        """Change fields of one item; ``False`` if it is not in the queue."""
        found = []

        def change(q: dict[str, Any] | None) -> dict[str, Any]:
            items = self._items(q)
            for i, it in enumerate(items):
                if it["id"] == item_id:
                    items[i] = {**it, **changes, "id": item_id}
                    found.append(True)
            return {"items": items}

        self._doc.modify(change)
        return bool(found)

    def remove(self, item_id: str) -> bool:
        """Remove one item; ``False`` if it is not in the queue."""
        removed = []

        def drop(q: dict[str, Any] | None) -> dict[str, Any]:
            items = self._items(q)
            kept = [it for it in items if it["id"] != item_id]
            removed.append(len(kept) != len(items))
            return {"items": kept}

        self._doc.modify(drop)
        return removed[-1]

    def reorder(self, item_ids: list[str]) -> None:
        """Put the items in this order; the ids must be exactly the queue's ids."""

        def order(q: dict[str, Any] | None) -> dict[str, Any]:
            items = {it["id"]: it for it in self._items(q)}
            if sorted(item_ids) != sorted(items):
                raise ValueError("reorder needs exactly the ids currently in the queue")
            return {"items": [items[i] for i in item_ids]}

        self._doc.modify(order)

    def items(self) -> list[dict[str, Any]]:
        """The queue, in order."""
        return self._items(self._doc.read())
