"""Read template.yaml (CloudFormation/SAM short-form tags) and resolve the intrinsics we need locally."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from stagewarden.usage import HINT, UsageError, did_you_mean, not_utf8, os_problem


class TemplateError(UsageError, ValueError):
    """template.yaml (or the function asked of it) cannot be used; the message names the file."""


class _CfnLoader(yaml.SafeLoader):
    pass


def _construct_tag(loader: _CfnLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_CfnLoader.add_multi_constructor("!", _construct_tag)


def load_template(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise TemplateError(f"{path}: cannot read the template ({os_problem(exc)}){HINT}"
                            "run from the project folder or give --template PATH") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise TemplateError(f"{path}: {not_utf8(raw, exc)}{HINT}pass the SAM template (UTF-8 YAML) with --template") from None
    try:
        data = yaml.load(text, Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise TemplateError(f"{path}: {where}not valid YAML ({problem}){HINT}pass the SAM template with --template") from None
    if not isinstance(data, dict) or not isinstance(data.get("Resources"), dict):
        raise TemplateError(f"{path}: no Resources section{HINT}pass the SAM template (template.yaml) with --template")
    return data


def no_function(template_path: str | Path, logical_id: str, names: list[str]) -> TemplateError:
    return TemplateError(f"{template_path}: no function {logical_id!r}{did_you_mean(logical_id, names)} "
                         f"(functions: {', '.join(sorted(names)) or 'none'})")


@dataclass
class Context:
    """Values the template's intrinsics resolve to locally."""

    region: str = "us-east-1"
    account_id: str = "123456789012"
    stack_name: str = "stagewarden-local"
    parameters: dict[str, Any] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)  # logical id -> physical id / Ref value
    attrs: dict[tuple[str, str], str] = field(default_factory=dict)  # (logical id, attribute) -> value
    conditions: dict[str, bool] = field(default_factory=dict)

    def pseudo(self, name: str) -> str | None:
        return {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account_id,
            "AWS::StackName": self.stack_name,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NoValue": None,
        }.get(name, f"<{name}>")


_NO_VALUE = object()


def parameter_defaults(template: dict[str, Any], overrides: dict[str, str] | None = None) -> dict[str, Any]:
    params = {}
    for name, spec in (template.get("Parameters") or {}).items():
        if overrides and name in overrides:
            params[name] = overrides[name]
        elif "Default" in spec:
            params[name] = spec["Default"]
        elif spec.get("AllowedValues"):
            params[name] = spec["AllowedValues"][0]
        else:
            params[name] = ""
    return params


def check_parameters(template: dict[str, Any], values: dict[str, Any]) -> list[str]:
    """CloudFormation's checks of parameter values, one message per failure naming the parameter.

    AllowedValues, MinLength, MaxLength and AllowedPattern (matched against the whole value,
    empty included), as CloudFormation applies them before it creates anything.
    """
    errors = []
    for name, spec in (template.get("Parameters") or {}).items():
        if name not in values:
            if "Default" not in spec:
                errors.append(f"Parameters.{name}: no value and no default")
            continue
        value = str(values[name])
        allowed = [str(v) for v in spec.get("AllowedValues") or []]
        if allowed and value not in allowed:
            problem = f"is not one of {', '.join(allowed)}"
        elif "MinLength" in spec and len(value) < int(spec["MinLength"]):
            problem = f"is shorter than {spec['MinLength']} character(s)"
        elif "MaxLength" in spec and len(value) > int(spec["MaxLength"]):
            problem = f"is longer than {spec['MaxLength']} characters"
        elif "AllowedPattern" in spec and not re.fullmatch(spec["AllowedPattern"], value):
            problem = f"does not match {spec['AllowedPattern']}"
        else:
            continue
        why = spec.get("ConstraintDescription")
        errors.append(f"Parameters.{name}: {value!r} {problem}" + (f" ({why})" if why else ""))
    return errors


def evaluate_conditions(template: dict[str, Any], ctx: Context) -> None:
    for name, expr in (template.get("Conditions") or {}).items():
        ctx.conditions[name] = bool(resolve(expr, ctx))


def resolve(value: Any, ctx: Context) -> Any:
    """Resolve Ref, GetAtt, Sub, If, Join, Equals, Not, And, Or, Select, Split; unknown refs stay visible."""
    if isinstance(value, list):
        return [v for v in (resolve(v, ctx) for v in value) if v is not _NO_VALUE]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        (key, arg), = value.items()
        if key == "Ref":
            return _ref(arg, ctx)
        if key == "Fn::GetAtt":
            logical, attr = arg if isinstance(arg, list) else arg.split(".", 1)
            return ctx.attrs.get((logical, attr), f"<{logical}.{attr}>")
        if key == "Fn::Sub":
            return _sub(arg, ctx)
        if key == "Fn::If":
            name, yes, no = arg
            return resolve(yes if ctx.conditions.get(name, False) else no, ctx)
        if key == "Fn::Join":
            sep, items = arg
            return sep.join(str(i) for i in resolve(items, ctx))
        if key == "Fn::Equals":
            a, b = resolve(arg, ctx)
            return a == b
        if key == "Fn::Not":
            return not resolve(arg, ctx)[0]
        if key == "Fn::And":
            return all(resolve(arg, ctx))
        if key == "Fn::Or":
            return any(resolve(arg, ctx))
        if key == "Fn::Select":
            index, items = resolve(arg, ctx)
            return items[int(index)]
        if key == "Fn::Split":
            sep, text = arg
            return str(resolve(text, ctx)).split(sep)
        if key == "Condition":
            return ctx.conditions.get(arg, False)
    return {k: v for k, v in ((k, resolve(v, ctx)) for k, v in value.items()) if v is not _NO_VALUE}


def _ref(name: str, ctx: Context) -> Any:
    if name == "AWS::NoValue":
        return _NO_VALUE
    if name.startswith("AWS::"):
        return ctx.pseudo(name)
    if name in ctx.parameters:
        return ctx.parameters[name]
    return ctx.refs.get(name, f"<{name}>")


_SUB = re.compile(r"\$\{([^}!][^}]*)\}")


def _sub(arg: Any, ctx: Context) -> str:
    if isinstance(arg, list):
        text, variables = arg[0], {k: resolve(v, ctx) for k, v in arg[1].items()}
    else:
        text, variables = arg, {}

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in variables:
            return str(variables[name])
        if "." in name and not name.startswith("AWS::"):
            logical, attr = name.split(".", 1)
            return str(ctx.attrs.get((logical, attr), f"<{name}>"))
        return str(_ref(name, ctx))

    return _SUB.sub(replace, text)


def functions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v.get("Type") == "AWS::Serverless::Function"}
