"""The Python examples in the README and the user guides run, in order, as written."""

from __future__ import annotations

import os
import re
import shlex
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
    ROOT / "docs" / "data.md",
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


def test_data_guide_commands_run(tmp_path: Path) -> None:
    """The `keel data` commands of docs/data.md, on the files its Python examples wrote."""
    doc = ROOT / "docs" / "data.md"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEEL_", "MLFLOW_"))}
    subprocess.run(
        [sys.executable, "-c", _RUNNER],
        input="\n#<block>\n".join(python_blocks(doc)),
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    commands = [
        line
        for block in re.findall(r"```bash\n(.*?)```", doc.read_text(), re.DOTALL)
        for line in block.splitlines()
        if line.startswith("keel data ") and "<" not in line
    ]
    assert len(commands) >= 8
    for line in commands:
        command, _, comment = line.partition("#")
        expected = 1 if "exits 1" in comment else 0
        proc = subprocess.run(
            [
                sys.executable,
                "-c",
                "from keel.cli.main import main; main()",
                *shlex.split(command)[1:],
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == expected, f"{line}\n{proc.stdout}\n{proc.stderr}"


def test_ui_guide_pictures_exist() -> None:
    """Every screenshot in docs/ui.md is in the repository (docs/ui_screenshots.py makes them)."""
    guide = (ROOT / "docs" / "ui.md").read_text()
    pictures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", guide)
    assert len(pictures) >= 7
    for picture in pictures:
        assert (ROOT / "docs" / picture).is_file(), picture
