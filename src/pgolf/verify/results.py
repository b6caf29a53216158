"""Check results: `{id, verdict, detail}` with the rule's status and citation, and the track caps."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pgolf.verify.rules import ALL, FAIL, INFO, PASS, VERDICTS, WARN, Verdict

SEVERITY = {v: i for i, v in enumerate(VERDICTS)}  # INFO < PASS < WARN < FAIL


@dataclass(frozen=True)
class CheckResult:
    """One verdict on one rule (a rule may give several, e.g. one per seed)."""

    id: str
    verdict: Verdict
    detail: str

    @property
    def tag(self) -> str:
        rule = ALL.get(self.id)
        return rule.tag if rule is not None else ""

    def line(self) -> str:
        """`FAIL SIZE-1 [OFFICIAL README] seed 42: 16,000,001 > 16,000,000`."""
        return f"{self.verdict} {self.id} {self.tag} {self.detail}".replace("  ", " ")

    def to_dict(self) -> dict[str, Any]:
        rule = ALL.get(self.id)
        return {"id": self.id, "verdict": self.verdict, "detail": self.detail,
                "status": rule.status if rule else None, "citation": rule.citation if rule else None}


def result(rule_id: str, verdict: Verdict, detail: str) -> CheckResult:
    assert rule_id in ALL, f"unknown rule id {rule_id}"
    assert verdict in SEVERITY
    return CheckResult(rule_id, verdict, detail)


def violation(rule_id: str, detail: str) -> CheckResult:
    """A broken rule, with the verdict its status gives by default."""
    return result(rule_id, ALL[rule_id].verdict, detail)


def cap(results: Iterable[CheckResult], non_record: bool) -> list[CheckResult]:
    """On the non-record track some rules give at most INFO or WARN (rules.md §0 Tracks)."""
    out = []
    for r in results:
        limit = ALL[r.id].non_record if non_record else None
        if limit is not None and r.verdict in (WARN, FAIL) and SEVERITY[r.verdict] > SEVERITY[limit]:
            r = CheckResult(r.id, limit, f"{r.detail} (non-record track: {r.verdict} lowered to {limit})")
        out.append(r)
    return out


def failed(results: Sequence[CheckResult]) -> list[CheckResult]:
    return [r for r in results if r.verdict == FAIL]


def counts(results: Sequence[CheckResult]) -> dict[str, int]:
    return {v: sum(1 for r in results if r.verdict == v) for v in (PASS, WARN, FAIL, INFO)}


def worst(results: Sequence[CheckResult]) -> Verdict:
    """The verdict that sums up a rule's results: FAIL > WARN > PASS > INFO."""
    return max((r.verdict for r in results), key=SEVERITY.__getitem__, default=INFO)


__all__ = ["CheckResult", "FAIL", "INFO", "PASS", "WARN", "cap", "counts", "failed", "result", "violation", "worst"]
