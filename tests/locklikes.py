"""Factories for every lock-like that the contract suite covers."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from typing import Any

import lockkit
import lockkit.sync


def _mutex(timeout: float | None) -> Any:
    return lockkit.Mutex("contract", timeout=timeout)


def _rw(policy: Any) -> Callable[[float | None], Any]:
    def make(timeout: float | None) -> Any:
        return lockkit.RWLock(policy, name="contract", timeout=timeout)

    return make


def _manager_key(timeout: float | None) -> Any:
    return lockkit.LockManager("contract").get_lock("key", timeout=timeout)


def _filemutex(timeout: float | None) -> Any:
    return lockkit.sync.FileMutex().get_lock("some/../data.json", timeout=timeout)


def _filelock(strategy: str) -> Callable[[float | None], Any]:
    def make(timeout: float | None) -> Any:
        directory = tempfile.mkdtemp(prefix="lockkit-contract-")
        return lockkit.FileLock(os.path.join(directory, "x.lock"), timeout=timeout, strategy=strategy)  # type: ignore[arg-type]

    return make


#: name -> (factory taking a default timeout, strict FIFO?)
LOCKLIKES: dict[str, tuple[Callable[[float | None], Any], bool]] = {
    "Mutex": (_mutex, True),
    "RWLock-fifo": (_rw("fifo"), True),
    "RWLock-read": (_rw("read"), False),
    "RWLock-write": (_rw("write"), False),
    "LockManager-key": (_manager_key, True),
    "FileMutex-file": (_filemutex, True),
    "FileLock-kernel": (_filelock("kernel"), True),
    "FileLock-marker": (_filelock("marker"), True),
}
