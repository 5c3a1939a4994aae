"""Load, bounded and local: 50 clients watch progress while 10 runs proceed on 10 lab clusters (bench/load.py)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lab.pytest_plugin import require_lab

pytestmark = pytest.mark.lab
ROOT = Path(__file__).resolve().parent.parent.parent


def test_fifty_watchers_ten_runs_no_5xx_no_lost_or_duplicated_rows(tmp_path):
    require_lab()
    out = tmp_path / "load.json"
    res = subprocess.run([sys.executable, "bench/load.py", "--clusters", "10", "--users", "50", "--seconds", "60",
                          "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=420, check=False)
    assert out.exists(), res.stdout[-2000:] + res.stderr[-3000:]
    figures = json.loads(out.read_text())
    print(json.dumps(figures))
    assert figures["requests"] > 500
    assert figures["server_errors"] == 0 and figures["failures"] == 0, figures["failure_kinds"]
    # A connection broken before any answer is sent again, as a browser does; rare, or it is a failure too.
    assert figures["connections_broken_and_retried"] <= figures["requests"] // 100, figures
    assert figures["runs_ok"] == 10
    assert figures["lost_rows"] == 0 and figures["duplicated_rows"] == 0 and figures["unfinished_rows"] == 0
    assert figures["p95_ms"] < 2000
