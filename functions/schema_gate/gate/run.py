"""One call that validates a readable file against a contract (used by the function and the CLI)."""

from __future__ import annotations

from typing import Any, BinaryIO

from gate.engine import TooLarge, Validator
from gate.readers import batches

from stage_policy.model import Contract


def validate(source: BinaryIO, name: str, contract: Contract, baseline: dict[str, Any] | None = None) -> tuple[dict[str, Any], Validator]:
    """The JSON report (TooLarge and ReadError propagate: the caller turns them into findings)."""
    validator = Validator(contract, baseline)
    for batch in batches(source, name, contract, validator.invalid_rows):
        validator.feed(batch)
    return validator.report(), validator


__all__ = ["validate", "TooLarge"]
