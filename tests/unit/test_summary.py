"""The `make test` summary adds up the stages and fails when one failed or never reported."""

from pathlib import Path

from tests.support.summary import main, parse


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


def test_stages_per_target(tmp_path: Path, capsys) -> None:
    report = tmp_path / "report"
    report.write_text("pytest (unit): 400 passed, 0 failed, 3 skipped (needs root)\n"
                      "p4-check: 1 passed, 0 failed, 0 skipped\n"
                      "pytest e2e [bmv2]: 40 passed, 0 failed, 0 skipped\n"
                      "ptf [bmv2]: 30 passed, 0 failed, 0 skipped\n"
                      "pytest e2e [soft]: 39 passed, 1 failed, 0 skipped\n")
    assert [r.stage for r in parse(report.read_text())] == [
        "pytest (unit)", "p4-check", "pytest e2e [bmv2]", "ptf [bmv2]", "pytest e2e [soft]"]
    assert main(str(report), ["bmv2", "soft"]) == 1
    out = capsys.readouterr().out
    assert "  pytest e2e [soft]   39 passed   1 failed   0 skipped" in out
    assert "  ptf [soft]        did not report" in out
    assert out.rstrip().endswith("total: 510 passed, 2 failed, 3 skipped")
    report.write_text(report.read_text() + "ptf [soft]: 0 passed, 0 failed, 30 skipped "
                                           "(softnic not found)\n")
    assert main(str(report), ["bmv2", "soft"]) == 1  # the e2e failure still counts
    assert "skipped because: softnic not found" in capsys.readouterr().out


def test_only_the_targets_that_ran_are_expected(tmp_path: Path, capsys) -> None:
    report = tmp_path / "report"
    report.write_text("pytest (unit): 4 passed, 0 failed, 0 skipped\n"
                      "p4-check: 0 passed, 0 failed, 1 skipped (p4c not found)\n"
                      "pytest e2e [soft]: 3 passed, 0 failed, 0 skipped\n"
                      "ptf [soft]: 2 passed, 0 failed, 0 skipped\n")
    assert main(str(report), ["soft"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("total: 9 passed, 0 failed, 1 skipped")
