"""The architecture, checked from the imports: each layer imports only the layers below it."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import pytest

import lockkit

ROOT = pathlib.Path(lockkit.__file__).parent

#: Bottom to top. A module may import modules of its own layer or of a lower one.
LAYERS = [
    ("lockkit.exceptions", "lockkit._version"),
    ("lockkit._internal",),
    ("lockkit.resilience",),
    ("lockkit.sync",),
    ("lockkit.files",),
    ("lockkit.redis", "lockkit.postgres"),
    ("lockkit.storage",),
    ("lockkit", "lockkit.testing", "lockkit.pytest_plugin", "lockkit._tools", "lockkit.__main__", "lockkit.contrib"),
]


def layer_of(module: str) -> int:
    best = (-1, -1)  # (length of the matching prefix, layer)
    for rank, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best[0]:
                best = (len(prefix), rank)
    assert best[1] >= 0, f"{module} belongs to no layer: add it to LAYERS"
    return best[1]


def module_name(path: pathlib.Path) -> str:
    parts = ["lockkit", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names if node.module == "lockkit")
    return {n for n in names if n == "lockkit" or n.startswith("lockkit.")}


MODULES = sorted(ROOT.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_each_layer_imports_only_layers_below_it(path: pathlib.Path) -> None:
    me = module_name(path)
    mine = layer_of(me)
    tree = ast.parse(path.read_text(encoding="utf-8"))
    upward = sorted(n for n in imported(tree) if layer_of(n) > mine)
    assert not upward, f"{me} (layer {mine}) imports from higher layers: {upward}"


def test_every_module_lives_in_a_layer_package() -> None:
    flat = sorted(p.name for p in ROOT.glob("*.py"))
    assert flat == [
        "__init__.py",
        "__main__.py",
        "_version.py",
        "exceptions.py",
        "postgres.py",
        "pytest_plugin.py",
        "redis.py",
        "testing.py",
    ]


def test_import_lockkit_loads_no_layer_until_used() -> None:
    code = (
        "import sys, lockkit\n"
        "prefixes = ('lockkit.', 'structlog', 'tenacity', 'cryptography')\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(prefixes))\n"
        "print(','.join(loaded))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.strip()
    assert out.split(",") == ["lockkit._internal", "lockkit._internal.lazy", "lockkit._version", "lockkit.exceptions"]


def test_a_kernel_file_lock_loads_only_what_it_uses() -> None:
    # `lockkit run` and `from lockkit import FileLock` start fast: the marker strategy,
    # the other thread-scope locks, the service and modules lockkit can do without
    # (socket for the host name, secrets/hashlib for tokens, dataclasses for snapshots
    # nobody asked for) stay unloaded.
    unwanted = (
        "lockkit.files._marker",
        "lockkit.files._service",
        "lockkit.sync._rwlock",
        "lockkit.sync._filemutex",
        "lockkit.sync._default",
        "socket",
        "secrets",
        "hashlib",
        "dataclasses",
    )
    code = (
        "import sys, tempfile, os\n"
        "import lockkit._tools.cli\n"
        "from lockkit import FileLock\n"
        "with FileLock(os.path.join(tempfile.mkdtemp(), 'x.lock')): pass\n"
        f"print(sorted(m for m in {unwanted!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out


def test_the_cli_and_file_locks_load_no_optional_dependency() -> None:
    # `lockkit run` must start fast: tenacity, structlog (which pulls in asyncio) and
    # cryptography load only when a feature that needs them is used.
    import subprocess
    import sys

    code = (
        "import sys, lockkit._tools.cli, lockkit.files, lockkit.sync; "
        "print(sorted(m for m in ('tenacity', 'structlog', 'asyncio', 'cryptography') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out
