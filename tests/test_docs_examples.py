"""Every ```python block of the README, the API page and the simulations page runs, so the
examples cannot rot.

Each block runs as its own program in a fresh interpreter, bounded by a timeout: an example
that hangs (as one that subscribes to events after they happened would) fails instead.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = ("README.md", "docs/api.md", "docs/simulations.md")
EXAMPLE_TIMEOUT = 30.0
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _examples() -> list[tuple[str, str]]:
    found = []
    for name in DOCUMENTS:
        text = (ROOT / name).read_text()
        for match in _BLOCK.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            found.append((f"{name}:{line}", match.group(1)))
    return found


def test_the_documents_have_examples() -> None:
    assert {where.split(":")[0] for where, _ in _examples()} == set(DOCUMENTS)


@pytest.mark.parametrize(("where", "code"), _examples(), ids=[w for w, _ in _examples()])
def test_documented_example_runs(where: str, code: str, tmp_path: Path) -> None:
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=EXAMPLE_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"the example at {where} did not finish within {EXAMPLE_TIMEOUT:.0f} s")
    assert proc.returncode == 0, f"the example at {where} failed:\n{proc.stderr}"
