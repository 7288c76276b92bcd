"""The bench command tells why PostgreSQL cannot be used instead of failing."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from ..conftest import PG_DSN

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench.py"


def _bench() -> ModuleType:
    # As when run as a script: its sibling modules (reads_cost.py) import from its folder.
    if str(BENCH.parent) not in sys.path:
        sys.path.append(str(BENCH.parent))
    spec = importlib.util.spec_from_file_location("trio_sync_bench", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("trio_sync_bench", module)
    spec.loader.exec_module(module)
    return module


def test_unreachable_postgres_is_a_reason_not_a_traceback() -> None:
    problem = _bench().postgres_problem("postgresql://postgres@127.0.0.1:1/postgres")
    assert problem is not None and "connect" in problem.lower()


def test_reachable_postgres_has_no_problem() -> None:
    if PG_DSN is not None:
        assert _bench().postgres_problem(PG_DSN) is None
