"""The arrows of docs/ARCHITECTURE.md, checked: service/'s sub-packages import only those below
them, and the service never loads worker/, cli/ or the training code (torch)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SERVICE = Path(__file__).resolve().parents[2] / "service"
# What each sub-package may import of the others (settings, errors and artifacts: any of them).
MAY_IMPORT = {
    "db": {"db", "optuna"},  # the Database builds Optuna's storage
    "optuna": {"optuna", "db.retry"},
    "spec": {"spec", "db"},
    "notify": {"notify", "db", "spec"},
    "scheduling": {"scheduling", "db", "optuna", "spec", "notify"},
    "studies": {"studies", "db", "optuna", "spec", "scheduling", "notify"},
    "reports": {"reports", "db", "optuna", "spec", "studies"},
    "api": {"api", "db", "optuna", "spec", "scheduling", "studies", "reports", "notify"},
}
SHARED = {"settings", "errors", "artifacts"}


def _imports(path: Path) -> set[str]:
    """The modules ``path`` imports (absolute imports; the project uses no relative ones)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_each_sub_package_imports_only_those_below_it():
    breaches = []
    for package, allowed in MAY_IMPORT.items():
        for path in (SERVICE / package).glob("*.py"):
            for module in _imports(path):
                parts = module.split(".")
                if parts[0] in {"worker", "cli"}:
                    breaches.append(f"{package}/{path.name} imports {module}")
                if parts[0] != "service" or len(parts) < 2 or parts[1] in SHARED:
                    continue
                inner = ".".join(parts[1:])
                if not any(inner == a or inner.startswith(a + ".") or parts[1] == a for a in allowed):
                    breaches.append(f"{package}/{path.name} imports {module}")
    assert breaches == []


def test_the_api_loads_neither_torch_nor_the_worker():
    code = "import sys, service.api; print(sorted({'torch', 'worker', 'cli'} & set(sys.modules)))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
