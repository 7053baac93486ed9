"""No committed file names a machine's folders (/work/..., /tmp/...): docs, README, code, benchmark results."""

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MACHINE_PATH = re.compile(r"(?<![\w.~])/(?:work|tmp|home|root|Users|mnt|scratch)/")


def _tracked() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [ROOT / p for p in out.splitlines() if not p.startswith("tests/")
            and p.endswith((".py", ".md", ".toml", ".json", ".jsonl", ".sh", ".txt"))]


def test_no_committed_file_holds_a_machine_path():
    bad = [str(p.relative_to(ROOT)) for p in _tracked() if p.is_file()
           and MACHINE_PATH.search(p.read_text(errors="replace"))]
    assert not bad, bad
