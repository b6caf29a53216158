"""User-facing errors.

A `PgolfError` is a mistake the user can fix (a missing file, a corrupt shard, a config typo): the CLI
prints its one-line message on stderr and exits with `exit_code`, never a traceback. Internal
invariants use `assert`.

Exit codes: 0 success, 1 `PgolfError`, 2 usage error (Typer), 3 readable but non-compliant
(`NonCompliantError`: verify FAILs or refuses --submission, pack is over the byte budget, run
completed but its verify FAILs), 130 interrupted.
"""

from __future__ import annotations


class PgolfError(Exception):
    """A problem the user can fix; `str()` is the whole message, naming what is wrong and the fix."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None):
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message}; {hint}")


class ConfigError(PgolfError):
    """An unknown key, a value of the wrong type or out of range, a malformed TOML file."""


class DataError(PgolfError):
    """A missing, truncated or malformed corpus, shard or tokenizer."""


class ArtifactError(PgolfError):
    """A stage directory that is missing, incomplete, corrupt, of the wrong kind or schema version."""


class LegalityError(PgolfError):
    """An evaluation step that would break the challenge rules (e.g. adapting on unscored tokens)."""


class NonCompliantError(PgolfError):
    """The artifact is readable but breaks the rules or the budget (verify, submission, pack, run)."""

    exit_code = 3
