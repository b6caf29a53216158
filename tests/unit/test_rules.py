"""The rule registry covers the rulebook: every rule of rules.md has a check or a reason."""

import re
from pathlib import Path

import pytest

from pgolf.verify import checks
from pgolf.verify.results import CheckResult, cap, result
from pgolf.verify.rules import ALL, FAIL, INFO, RULES, WARN

RULEBOOK = Path(__file__).resolve().parents[3] / "shared" / "docs" / "rules.md"
HEADING = re.compile(r"^### ([A-Z]+-\d+) (.+?)( \[E\])?$")


def rulebook() -> dict[str, tuple[str, bool]]:
    if not RULEBOOK.is_file():
        pytest.skip(f"the rulebook is not at {RULEBOOK}")
    out = {}
    for line in RULEBOOK.read_text("utf-8").splitlines():
        m = HEADING.match(line.strip())
        if m:
            out[m.group(1)] = (m.group(2), m.group(3) is not None)
    return out


def test_registry_covers_every_rule_of_the_rulebook():
    book = rulebook()
    assert len(book) >= 40
    assert set(book) == set(RULES), f"missing: {set(book) - set(RULES)}, extra: {set(RULES) - set(book)}"


def test_enforced_rules_match_the_rulebook_marks():
    for rule_id, (_, enforced) in rulebook().items():
        assert (RULES[rule_id].enforced_by == "ttt-eval") == enforced, rule_id


def test_every_rule_has_a_check_or_a_reason():
    for rule in ALL.values():
        if rule.check is None:
            assert len(rule.not_checkable) > 40, rule.id
        else:
            assert rule.check in checks.CHECKS, rule.id
        assert rule.evidence and rule.status.split()[0] in ("OFFICIAL", "RULING", "ACCEPTED", "CONTESTED", "PGOLF")
    assert {r.id for r in ALL.values() if r.check is None} == {"FMT-1", "FMT-5"}


def test_status_sets_the_default_verdict():
    for rule in RULES.values():
        if rule.status.startswith(("OFFICIAL", "RULING")) and rule.id not in ("SIZE-4",):
            assert rule.verdict == FAIL, rule.id
        if rule.status == "CONTESTED":
            assert rule.verdict == WARN, rule.id
    assert RULES["SIZE-4"].verdict == WARN and RULES["TTT-5"].verdict == INFO


def test_result_line_carries_status_and_citation():
    r = result("SIZE-1", FAIL, "seed 42: 16,000,001 > 16,000,000")
    assert r.line() == "FAIL SIZE-1 [OFFICIAL README] seed 42: 16,000,001 > 16,000,000"
    assert result("DATA-2", FAIL, "x").line() == "FAIL DATA-2 [RULING #2146] x"
    assert r.to_dict() == {"id": "SIZE-1", "verdict": "FAIL", "detail": "seed 42: 16,000,001 > 16,000,000",
                           "status": "OFFICIAL", "citation": "README"}


def test_non_record_track_lowers_time_and_significance_rules():
    rs = [result("TIME-1", FAIL, "a"), result("TIME-3", FAIL, "b"), result("STAT-2", FAIL, "c"),
          result("SIZE-1", FAIL, "d")]
    capped = cap(rs, non_record=True)
    assert [r.verdict for r in capped] == [INFO, WARN, INFO, FAIL]
    assert "non-record track" in capped[0].detail
    assert cap(rs, non_record=False) == rs
    assert isinstance(capped[0], CheckResult)


def test_the_verify_reference_documents_every_check():
    doc = (Path(__file__).resolve().parents[2] / "docs" / "verify.md").read_text("utf-8")
    for rule_id in ALL:
        assert f"**{rule_id}**" in doc, rule_id
