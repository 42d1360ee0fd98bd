"""Load a policy document (YAML or JSON) and validate it, naming the file and field of every error.

YAML is imported on first use only, never at package import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from stage_policy.model import Policy, cross_check
from stage_policy.presets import apply_preset


class PolicyError(ValueError):
    """A policy that must not be used. ``problems`` are ``(field path, message)`` pairs."""

    def __init__(self, source: str, problems: list[tuple[str, str]]):
        self.source = source
        self.problems = problems
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        return [f"{self.source}: {path}: {message}" if path else f"{self.source}: {message}" for path, message in self.problems]


def _yaml_load(text: str, source: str) -> Any:
    import yaml  # deferred: only policy loading needs it

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return yaml.load(text, Loader=loader)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise PolicyError(source, [("", f"{where}not valid YAML ({problem})")]) from None


def _format_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


_TYPE_WORDS = {
    "int_parsing": "must be a whole number", "int_type": "must be a whole number", "int_from_float": "must be a whole number",
    "float_parsing": "must be a number", "float_type": "must be a number",
    "bool_parsing": "must be true or false", "bool_type": "must be true or false",
    "string_type": "must be a string", "dict_type": "must be a mapping", "model_type": "must be a mapping",
    "tuple_type": "must be a list", "list_type": "must be a list",
}


def _message(err: dict[str, Any]) -> str:
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        op = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}[kind]
        bound = next(iter(ctx.values()))
        return f"must be {op} {bound} (got {err.get('input')!r})"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')} (got {err.get('input')!r})"
    if kind == "string_pattern_mismatch":
        return f"{err.get('input')!r} does not match {ctx.get('pattern')!r}"
    if kind in _TYPE_WORDS:
        return f"{_TYPE_WORDS[kind]} (got {err.get('input')!r})"
    if kind == "too_short":
        return "must not be empty"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    return err["msg"][0].lower() + err["msg"][1:]


def validate_document(document: Any, source: str = "<policy>") -> Policy:
    """Validate a parsed document (presets applied first). Raises :class:`PolicyError`."""
    if not isinstance(document, dict):
        raise PolicyError(source, [("", "the document must be a mapping (got %s)" % type(document).__name__)])
    try:
        policy = Policy.model_validate(apply_preset(document))
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            # pydantic inserts validator/union member names into the location; keep field names only
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and ("[" in p or p.startswith("function"))))
            problems.append((_format_loc(loc), _message(err)))
        raise PolicyError(source, problems) from None
    problems = cross_check(policy)
    if problems:
        raise PolicyError(source, problems)
    return policy


def loads(text: str, source: str = "<policy>") -> Policy:
    """Parse and validate a policy from YAML (or JSON, a subset of YAML) text."""
    return validate_document(_yaml_load(text, source), source)


def load(path: str | Path) -> Policy:
    """Load and validate a policy file; errors name the file and the field path."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(str(path), [("", f"cannot read file ({exc.strerror or exc})")]) from None
    return loads(text, str(path))


def load_preset(framework: str) -> Policy:
    """A policy made of one preset alone (used by tools when no policy file is given)."""
    return validate_document({"framework": framework}, f"preset:{framework}")
