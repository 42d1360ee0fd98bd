"""One call that validates a readable file against a contract (used by the function and the CLI)."""

from __future__ import annotations

from typing import Any, BinaryIO

from gate.engine import TooLarge, Validator
from gate.readers import ReadError, batches

from stage_policy.model import Contract


def validate(source: BinaryIO, name: str, contract: Contract, baseline: dict[str, Any] | None = None) -> tuple[dict[str, Any], Validator]:
    """The JSON report (TooLarge and ReadError propagate: the caller turns them into findings)."""
    validator = Validator(contract, baseline)
    checked: list[str] | None = None
    for batch in batches(source, name, contract, validator.invalid_rows):
        names = batch.schema.names
        if names != checked:  # a header naming a column twice cannot be checked column by column: the file fails
            repeated = sorted({n for n in names if names.count(n) > 1})
            if repeated:
                shown = ", ".join(repr(n[:64]) for n in repeated[:5]) + (f" and {len(repeated) - 5} more" if len(repeated) > 5 else "")
                raise ReadError(f"{name}: cannot be read as {contract.format} (the header names {shown} more than once)")
            checked = names
        validator.feed(batch)
    return validator.report(), validator


__all__ = ["validate", "TooLarge"]
