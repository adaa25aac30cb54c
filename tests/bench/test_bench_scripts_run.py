"""Every bench script starts as its docstring says, from any directory: `python bench/<name>.py`
puts the repository on the path itself (nothing from tests/ or the current directory), so
`--help` answers. A script that imported a test helper before its path line, or a module that
moved, fails here rather than in an operator's hands."""

import subprocess
import sys

import pytest

from tests.support import ROOT

SCRIPTS = sorted(p.name for p in (ROOT / "bench").glob("*.py") if not p.name.startswith("_"))
HELPERS = {"bench_settings.py", "bench_urls.py"}


@pytest.mark.parametrize("script", [s for s in SCRIPTS if s not in HELPERS])
def test_a_bench_script_answers_help_from_another_directory(script, tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), "--help"],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr[-2000:]
    assert "usage:" in result.stdout
