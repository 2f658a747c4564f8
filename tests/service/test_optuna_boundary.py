"""Optuna's private API is used in service/optuna/ and nowhere else, and that package depends on
nothing of the service but the database retry policy: an Optuna upgrade touches one folder."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("service", "worker", "cli", "objectives", "benchmarks")
ADAPTER = ROOT / "service" / "optuna"
# A private name reached through optuna (optuna.x._y), a trial's storage id, Optuna's RDB package,
# its trial cache or its private tell: the names service/optuna/ exists to hide.
PRIVATE_OPTUNA = re.compile(r"optuna[._a-zA-Z]*\._[a-z]|\._trial_id|_rdb\b|_rdb\.|_CachedStorage|_tell_with_warning")
ADAPTER_MAY_IMPORT = {"service.db.retry", "service.optuna"}


def _python_files() -> list[Path]:
    return sorted(path for folder in SCANNED for path in (ROOT / folder).rglob("*.py"))


def test_the_pattern_finds_each_kind_of_private_use():
    """The scan below is only as good as its pattern: each line here must be caught."""
    for line in (
        "trial_id = created._trial_id",
        "from optuna.storages._rdb import models",
        "from optuna.storages._cached_storage import _CachedStorage",
        "from optuna.study._tell import _tell_with_warning",
        "optuna.study._optimize._run_trial(study)",
    ):
        assert PRIVATE_OPTUNA.search(line), line
    assert not PRIVATE_OPTUNA.search("from optuna.storages import RDBStorage")


def test_no_module_outside_service_optuna_uses_optuna_s_private_api():
    leaks = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in _python_files()
        if ADAPTER not in path.parents
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if PRIVATE_OPTUNA.search(line)
    ]
    assert leaks == [], "Optuna's private API outside service/optuna/:\n" + "\n".join(leaks)


def test_service_optuna_imports_nothing_of_ours_but_the_retry_policy():
    imported: dict[str, set[str]] = {}
    for path in ADAPTER.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            ours = {n for n in names if n.split(".")[0] in {"service", "worker", "cli", "objectives"}}
            imported.setdefault(path.name, set()).update(ours)
    outside = {
        name: sorted(m for m in modules if not any(m.startswith(a) for a in ADAPTER_MAY_IMPORT))
        for name, modules in imported.items()
    }
    assert {name: modules for name, modules in outside.items() if modules} == {}
