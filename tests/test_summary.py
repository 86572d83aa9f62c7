"""The `make test` summary adds up the stages and fails when one failed or never reported."""

from pathlib import Path

from tests.summary import main, parse


def test_parse_and_total(tmp_path: Path, capsys) -> None:
    report = tmp_path / "report"
    report.write_text("pytest: 40 passed, 0 failed, 1 skipped (needs root)\n"
                      "p4-check: 0 passed, 0 failed, 1 skipped (p4c not found)\n"
                      "ptf: 30 passed, 0 failed, 0 skipped\n")
    assert [r.stage for r in parse(report.read_text())] == ["pytest", "p4-check", "ptf"]
    assert main(str(report)) == 0
    out = capsys.readouterr().out
    assert out.rstrip().endswith("total: 70 passed, 0 failed, 2 skipped")
    assert "p4c not found" in out


def test_failure_or_missing_stage_fails(tmp_path: Path, capsys) -> None:
    report = tmp_path / "report"
    report.write_text("pytest: 40 passed, 2 failed, 0 skipped\n")
    assert main(str(report)) == 1
    out = capsys.readouterr().out
    assert "p4-check  did not report" in out
    assert out.rstrip().endswith("total: 40 passed, 4 failed, 0 skipped")
