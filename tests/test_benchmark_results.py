"""Committed benchmark results name no machine's folders."""

import re
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
ABSOLUTE = re.compile(r"(?<![\w.])/(?:work|tmp|home|root|Users|mnt|scratch)/")


def test_no_result_file_holds_an_absolute_path():
    bad = [p.name for p in sorted(RESULTS.iterdir()) if p.suffix in (".json", ".md")
           and ABSOLUTE.search(p.read_text(errors="replace"))]
    assert not bad, bad
