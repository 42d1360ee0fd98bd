"""The demo's own helpers (the day itself runs in tests/e2e/test_demo.py)."""

from __future__ import annotations

import difflib

from stage_policy.loader import loads
from stagewarden.demo import demo_policy
from tests.helpers import ROOT


def test_the_day_runs_the_example_policy_with_final_prod_in_enforce_and_nothing_else_changed() -> None:
    example = (ROOT / "policy.example.yaml").read_text()

    text = demo_policy(example)

    before, after = loads(example, "example"), loads(text, "demo")
    assert before.mode_for("final-prod") == "dry_run" and after.mode_for("final-prod") == "enforce"
    assert [after.mode_for(s) for s in ("prod-discovery", "prod-integration")] == ["enforce", "dry_run"]
    added = [line for line in difflib.ndiff(example.splitlines(), text.splitlines()) if line[:2] in ("+ ", "- ")]
    assert added == ["+     mode: enforce"]


def test_a_policy_whose_final_prod_sets_its_own_mode_is_left_as_it_is() -> None:
    own = "framework: three-stage\nstages:\n  final-prod:\n    interactive_access: none\n    mode: dry_run\n"

    assert demo_policy(own) == own
    assert demo_policy("framework: two-stage\n") == "framework: two-stage\n"
