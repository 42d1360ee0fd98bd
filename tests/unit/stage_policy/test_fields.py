"""Every policy field and template parameter is documented with what reads it, and the docs match the code."""

from __future__ import annotations

import re
import types
import typing

import pytest
from pydantic import BaseModel

from stage_policy.fields import FIELDS, PARAMETERS, entry_for, markdown
from stage_policy.loader import loads
from stage_policy.model import Policy
from stagewarden.explain import not_built, table
from tests.helpers import ROOT


def _models_in(annotation) -> list[tuple[str, type[BaseModel]]]:
    origin = typing.get_origin(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [("", annotation)]
    out: list[tuple[str, type[BaseModel]]] = []
    if origin in (tuple, list):
        out += [("[]" + suffix, m) for a in typing.get_args(annotation) if a is not Ellipsis for suffix, m in _models_in(a)]
    elif origin is dict:
        out += [(".<name>" + suffix, m) for suffix, m in _models_in(typing.get_args(annotation)[1])]
    elif origin in (typing.Union, types.UnionType):
        out += [x for a in typing.get_args(annotation) for x in _models_in(a)]
    elif origin is typing.Annotated:
        out += _models_in(typing.get_args(annotation)[0])
    return out


def field_paths(model: type[BaseModel] = Policy, prefix: str = "") -> list[str]:
    paths = []
    for name, info in model.model_fields.items():
        subs = _models_in(info.annotation)
        if subs:
            for suffix, sub in subs:
                paths += field_paths(sub, f"{prefix}{name}{suffix}.")
        else:
            paths.append(prefix + name)
    return paths


def test_every_policy_field_has_an_entry() -> None:
    missing = [p for p in field_paths() if entry_for(p) is None]
    assert missing == [], f"document these fields in stage_policy/fields.py: {missing}"


def test_every_entry_covers_a_real_field() -> None:
    paths = field_paths()
    stale = [f.path for f in FIELDS if not any(p == f.path or (f.path.endswith(".") and p.startswith(f.path)) for p in paths)]
    assert stale == []


@pytest.mark.parametrize("field", FIELDS, ids=lambda f: f.path)
def test_every_entry_names_a_test_that_exists(field) -> None:
    file, _, name = field.test.partition("::")
    source = (ROOT / file).read_text()
    assert re.search(rf"^def {re.escape(name)}\(", source, re.M), f"{field.path}: {field.test} does not exist"


def test_every_template_parameter_is_documented() -> None:
    from stagewarden.cfn import load_template

    assert sorted(load_template(ROOT / "template.yaml")["Parameters"]) == sorted(p.name for p in PARAMETERS)


def test_the_readme_settings_table_is_the_generated_one() -> None:
    readme = (ROOT / "README.md").read_text()
    assert markdown() in readme, "regenerate the README settings table: stagewarden policy fields --format markdown"


def test_explain_says_which_set_fields_do_nothing_yet() -> None:
    # Given a policy that sets alert destinations and break glass, whose capabilities are not built
    policy = loads("""
framework: two-stage
alerts: {slack_webhook_secret: stagewarden/slack, security_hub: true}
""")

    # When explained
    notes, text = not_built(policy), table(policy, "p.yaml")

    # Then each field that does nothing yet is named, in the table output too
    not_built_paths = {f.path for f in FIELDS if f.status == "not built"}
    assert any(n.startswith("alerts.slack_webhook_secret is set, but does nothing yet") for n in notes)
    assert any(n.startswith("alerts.security_hub is set") for n in notes) and not any(n.startswith("alerts.email") for n in notes)
    for note in notes:
        assert note in text
    if "stages.<name>.retention." in not_built_paths:
        assert any(n.startswith("stages.prod-discovery.retention is set") for n in notes)
    if "stages.<name>.break_glass." in not_built_paths:
        assert any(n.startswith("stages.final-prod.break_glass is set") for n in notes)
