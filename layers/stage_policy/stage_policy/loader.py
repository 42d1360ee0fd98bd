"""Load a policy document (YAML or JSON) and validate it, naming the file and field of every error.

YAML is imported on first use only, never at package import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

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


def _did_you_mean(word: Any, choices: list[str]) -> str:
    import difflib  # deferred: only a policy with an unknown key needs it

    close = difflib.get_close_matches(str(word), choices, n=1, cutoff=0.7)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (known: {', '.join(choices)})" if choices else ""


def _models(annotation: Any) -> list[Any]:
    """The types a value of ``annotation`` may be, unions and Optional unpacked."""
    if get_origin(annotation) is Union or type(annotation).__name__ == "UnionType":
        return [t for arg in get_args(annotation) for t in _models(arg)]
    return [annotation]


def _fields_at(loc: tuple[Any, ...]) -> list[str]:
    """The field names of the model found at ``loc`` inside a Policy (empty if none)."""
    types: list[Any] = [Policy]
    for part in loc:
        nxt: list[Any] = []
        for t in types:
            origin, args = get_origin(t), get_args(t)
            if isinstance(t, type) and issubclass(t, BaseModel):
                if isinstance(part, str) and part in t.model_fields:
                    nxt += _models(t.model_fields[part].annotation)
            elif origin is dict and len(args) == 2:
                nxt += _models(args[1])
            elif origin is tuple and args and isinstance(part, int):
                nxt += _models(args[0])
        types = nxt
    for t in types:
        if isinstance(t, type) and issubclass(t, BaseModel):
            return list(t.model_fields)
    return []


def _unknown_field(loc: tuple[Any, ...]) -> str:
    return "unknown field" + _did_you_mean(loc[-1], _fields_at(loc[:-1]))


def _message(err: dict[str, Any], loc: tuple[Any, ...] = ()) -> str:
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return _unknown_field(loc) if loc else "unknown field"
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
    # A misspelt top-level key (`stage:` for `stages:`) is one error with a suggestion, not
    # "unknown field" plus "stages is required". Presets read no other top-level keys.
    unknown = [key for key in document if key not in Policy.model_fields]
    if unknown:
        raise PolicyError(source, [(str(key), _unknown_field((key,))) for key in unknown])
    try:
        policy = Policy.model_validate(apply_preset(document))
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            # pydantic inserts validator/union member names into the location; keep field names only
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and ("[" in p or p.startswith("function"))))
            problems.append((loc, err["type"], _message(err, loc)))
        raise PolicyError(source, _one_error_per_mistake(problems)) from None
    problems = cross_check(policy)
    if problems:
        raise PolicyError(source, problems)
    return policy


def _one_error_per_mistake(problems: list[tuple[tuple[Any, ...], str, str]]) -> list[tuple[str, str]]:
    """Drop errors another one implies: `X is required` beside an unknown field that is a misspelling of X,
    and `must not be empty` on a list whose items were given but failed (pydantic counts only valid ones)."""
    suggested = {(loc[:-1], message.split("'")[1]) for loc, kind, message in problems
                 if kind == "extra_forbidden" and "(did you mean '" in message}
    parents = {loc[:i] for loc, _, _ in problems for i in range(len(loc))}
    return [(_format_loc(loc), message) for loc, kind, message in problems
            if not (kind == "missing" and loc and (loc[:-1], loc[-1]) in suggested)
            and not (kind == "too_short" and loc in parents)]


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
    except UnicodeDecodeError as exc:
        raise PolicyError(str(path), [("", f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})")]) from None
    return loads(text, str(path))


def load_preset(framework: str) -> Policy:
    """A policy made of one preset alone (used by tools when no policy file is given)."""
    return validate_document({"framework": framework}, f"preset:{framework}")
