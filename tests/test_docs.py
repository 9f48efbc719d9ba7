"""The Python examples in the README and the user guides run, in order, as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [
    ROOT / "README.md",
    ROOT / "docs" / "tracking.md",
    ROOT / "docs" / "models.md",
    ROOT / "docs" / "registry.md",
]
_BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)

_RUNNER = """
import sys, traceback
blocks = sys.stdin.read().split("\\n#<block>\\n")
for i, block in enumerate(blocks, 1):
    try:
        exec(compile(block, f"<block {i}>", "exec"), {"__name__": "__main__"})
    except Exception:
        traceback.print_exc()
        print(f"example {i} failed:\\n{block}", file=sys.stderr)
        sys.exit(1)
"""


def python_blocks(doc: Path) -> list[str]:
    return _BLOCK.findall(doc.read_text())


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_examples_run(doc: Path, tmp_path: Path) -> None:
    blocks = python_blocks(doc)
    assert blocks, f"{doc} has no python examples"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEEL_", "MLFLOW_"))}
    proc = subprocess.run(
        [sys.executable, "-c", _RUNNER],
        input="\n#<block>\n".join(blocks),
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert (tmp_path / "keel.db").exists()
