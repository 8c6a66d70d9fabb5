"""Imports point one way: ``cluster`` -> ``serve`` -> (``actors``, ``messaging``, ``storage``)
-> the kernel.

Run as ``python tests/layers.py`` (``make lint`` does); ``tests/unit/test_layers.py`` runs the
same check. Every ``import`` in the five packages counts, including those inside functions.

- A module may import modules of its own layer and of the layers below it, never above.
- The kernel is what every layer may import: the pure domain modules, the error hierarchy,
  the request context, logging and the settings. A kernel module imports only the kernel (and
  the standard library or third-party packages), so importing it pulls nothing from above.
- ``IGNORED`` lists the upward imports that are known and allowed for now; an entry that no
  longer occurs is reported too, so the list can only shrink.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("cluster", "serve", "actors", "messaging", "storage")
LAYER = {"cluster": 3, "serve": 2, "actors": 1, "messaging": 1, "storage": 1}
KERNEL_LAYER = 0
KERNEL = (
    "cluster.settings",
    "serve.common.errors",
    "serve.common.context",
    "serve.common.logs",
    "serve.common.retry",
    "serve.common.bounded",
    "serve.*.domain",
    "serve.events.inventory",
    "serve.events.views",  # plain-dict views of rows as the API answers (the owners answer so)
)

# Upward imports known and allowed for now (none).
IGNORED: set[tuple[str, str]] = set()


@dataclass(frozen=True)
class Violation:
    importer: str
    imported: str
    line: int

    def __str__(self) -> str:
        return (f"{self.importer}:{self.line} imports {self.imported} "
                f"(layer {layer_of(self.importer)} -> {layer_of(self.imported)})")


def is_kernel(module: str) -> bool:
    return any(fnmatchcase(module, pattern) or module.startswith(pattern + ".")
               for pattern in KERNEL)


def layer_of(module: str) -> int:
    return KERNEL_LAYER if is_kernel(module) else LAYER[module.split(".")[0]]


def modules(root: Path = ROOT) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def imports(path: Path, known: set[str]) -> list[tuple[str, int]]:
    """First-party modules imported by ``path`` (``from a import b`` counts ``a.b`` if it is a
    module, else ``a``)."""
    result: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known
                     else node.module for a in node.names]
        else:
            continue
        result += [(name, node.lineno) for name in names if name.split(".")[0] in PACKAGES]
    return result


def check(root: Path = ROOT) -> tuple[list[Violation], set[tuple[str, str]]]:
    """Upward imports not in ``IGNORED``, and the ``IGNORED`` entries that no longer occur."""
    found = modules(root)
    known = set(found)
    violations: list[Violation] = []
    seen: set[tuple[str, str]] = set()
    for importer, path in found.items():
        for imported, line in imports(path, known):
            if imported == importer or imported.startswith(importer + "."):
                continue
            if layer_of(imported) <= layer_of(importer):
                continue
            if (importer, imported) in IGNORED:
                seen.add((importer, imported))
                continue
            violations.append(Violation(importer, imported, line))
    return violations, IGNORED - seen


def main() -> int:
    violations, stale = check()
    for violation in violations:
        print(f"upward import: {violation}")
    for importer, imported in sorted(stale):
        print(f"tests/layers.py: IGNORED lists {importer} -> {imported}, which no longer "
              "occurs; remove it")
    return 1 if violations or stale else 0


if __name__ == "__main__":
    sys.exit(main())
