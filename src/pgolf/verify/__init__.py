"""Verification (pure): the challenge rulebook as data, checks over evidence, probes, statistics.

- `rules.RULES`: every rule of rules.md (id, status, citation, default verdict, its check or why none);
- `evidence.Evidence`: what the checks judge (gathered from disk by `pgolf.stages.verify`);
- `checks.run_checks(evidence) -> [CheckResult]`: `{id, verdict: PASS|WARN|FAIL|INFO, detail}`;
- `probes.run_probes(scorer, tokens)`: P-norm, P-tgt, P-pre, P-doc, P-mut on the packed model;
- `stats` / `significance`: one-sided Welch and one-sample t-tests in nats and bpb;
- `records_folder`: the records folder's README.md and submission.json.

Importing this package does not import torch; `checks`, `probes` and `facts` do.
"""

from pgolf.verify.results import CheckResult
from pgolf.verify.rules import ALL, RULES, RULESET, Rule

__all__ = ["ALL", "CheckResult", "RULES", "RULESET", "Rule"]
