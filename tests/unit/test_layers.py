"""Imports point one way (tests/layers.py): the project keeps the rule, and the rule bites."""

from __future__ import annotations

from pathlib import Path

from tests import layers


def test_no_module_imports_a_layer_above_its_own() -> None:
    violations, stale = layers.check()
    assert [str(v) for v in violations] == []
    assert stale == set()


def _tree(root: Path, files: dict[str, str]) -> Path:
    for package in layers.PACKAGES:
        (root / package).mkdir(parents=True, exist_ok=True)
        (root / package / "__init__.py").write_text("")
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_an_upward_import_even_inside_a_function_is_reported(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "cluster/app.py": "APP = 1\n",
        "messaging/runtime.py": "def f():\n    from cluster.app import APP\n    return APP\n",
        "serve/common/service.py": "import messaging.runtime\n",
    })
    violations, _ = layers.check(root)
    assert [(v.importer, v.imported, v.line) for v in violations] == [
        ("messaging.runtime", "cluster.app", 2)]


def test_kernel_modules_may_import_only_the_kernel(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "cluster/settings.py": "",
        "storage/engine.py": "from cluster.settings import Settings\n",
        "serve/common/errors.py": "",
        "serve/events/domain.py": "from serve.common import errors\nimport storage.engine\n",
    })
    violations, _ = layers.check(root)
    assert [(v.importer, v.imported) for v in violations] == [
        ("serve.events.domain", "storage.engine")]


def test_an_ignored_import_that_no_longer_occurs_is_reported(tmp_path: Path) -> None:
    violations, stale = layers.check(_tree(tmp_path, {}))
    assert violations == []
    assert stale == layers.IGNORED
