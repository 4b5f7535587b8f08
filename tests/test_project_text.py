"""The project speaks to its users: no work-log, tracker or internal step numbers (the words for a work
session, a tracker issue or a stage followed by a number) in what it ships or documents; README stays a
front door (at most 250 lines)."""
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WORK_LOG = re.compile(r"\b(" + "|".join(["sess" + "ions?", "iss" + "ue", "sta" + "ge"]) + r")[ -]?#?\d+", re.I)
TEXT = (".md", ".py", ".sh", ".json", ".cc", ".h", ".cu", ".cuh", ".txt", ".toml", ".pyi", ".html", ".js", ".css")


def tracked_files():
    try:
        out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [ROOT / p for p in out.split("\n") if p.endswith(TEXT)]


def test_no_work_log_numbers():
    hits = []
    for p in tracked_files():
        if not p.is_file():
            continue
        for i, line in enumerate(p.read_text(encoding="utf-8", errors="replace").split("\n"), 1):
            m = WORK_LOG.search(line)
            if m:
                hits.append(f"{p.relative_to(ROOT)}:{i}: {m.group(0)}")
    assert not hits, "\n".join(hits[:40])


def test_readme_is_a_front_door():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").split("\n")
    assert len(lines) <= 250, len(lines)
    for link in re.findall(r"\]\(((?:docs/)?[\w./-]+\.md)\)", "\n".join(lines)):
        assert (ROOT / link).is_file(), link


def test_bench_results_hold_what_is_current():
    """bench/results keeps summaries and compact data (under 20k lines in all); raw dumps are regenerated
    by their commands, not committed."""
    out = subprocess.run(["git", "ls-files", "bench/results"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    lines = sum((ROOT / p).read_bytes().count(b"\n") for p in out if (ROOT / p).is_file())
    assert lines < 20000, lines
