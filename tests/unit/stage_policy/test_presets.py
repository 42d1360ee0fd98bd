"""Every preset loads with the field's values; a policy can start from a preset and override it."""

from __future__ import annotations

import pytest

from stage_policy.loader import load, load_preset, loads
from stage_policy.presets import PRESETS


@pytest.mark.parametrize("framework", sorted(PRESETS))
def test_every_preset_loads_and_holds_production_data_stages(framework: str) -> None:
    policy = load_preset(framework)

    assert policy.framework == framework
    assert list(policy.stages) == list(PRESETS[framework])
    prod = [s for s in policy.stages.values() if s.retention.permanent]
    assert len(prod) == 1 and prod[0].retention.immutable and prod[0].interactive_access == "none"
    assert prod[0].break_glass is not None and prod[0].break_glass.max_duration_minutes == 120


def test_five_stage_has_infra_stages_without_production_data() -> None:
    policy = load_preset("five-stage")

    assert not policy.stages["infra-dev"].production_data
    assert not policy.stages["infra-preprod"].production_data
    assert policy.stages["prod-discovery"].production_data


def test_three_workspace_uses_the_banks_names() -> None:
    assert list(load_preset("three-workspace").stages) == ["prod-analytics", "prod-parallel", "prod"]


def test_lab_uat_and_prod_carry_the_fields_values() -> None:
    policy = load_preset("three-stage")
    lab, uat, prod = (policy.stages[s] for s in ("prod-discovery", "prod-integration", "final-prod"))

    assert lab.retention.default_days == 90
    assert [(c.prefix, c.days) for c in lab.retention.prefix_classes] == [("raw/", 30), ("aggregated/", 90)]
    assert lab.download == "denied" and lab.interactive_access == "read-write"
    assert lab.exfiltration.max_bytes == 50 * 1024 * 1024 and lab.exfiltration.window_minutes == 10
    assert uat.retention.default_days == 30 and uat.interactive_access == "none"
    assert prod.retention.permanent and prod.retention.days_for("anything") is None


def test_retention_days_for_picks_the_longest_matching_prefix_class() -> None:
    lab = load_preset("two-stage").stages["prod-discovery"]

    assert lab.retention.days_for("raw/2026/11/x.csv") == 30
    assert lab.retention.days_for("aggregated/daily.parquet") == 90
    assert lab.retention.days_for("scratch/notebook.ipynb") == 90


def test_override_merges_over_the_preset_and_keeps_the_rest() -> None:
    policy = loads(
        """
        framework: three-stage
        defaults: {mode: enforce}
        stages:
          prod-integration:
            retention: {default_days: 60}
            mode: dry_run
          sandbox:
            production_data: false
            interactive_access: read-write
            retention: {default_days: 14}
            download: allowed
        """
    )

    assert policy.stages["prod-integration"].retention.default_days == 60
    assert policy.stages["prod-integration"].retention.noncurrent_version_days == 7  # kept from the preset
    assert policy.mode_for("prod-integration") == "dry_run"
    assert policy.mode_for("final-prod") == "enforce"
    assert "sandbox" in policy.stages and len(policy.stages) == 4


def test_the_example_policy_is_valid_and_shows_every_section(example_policy_path) -> None:
    policy = load(example_policy_path)

    assert policy.organization.account_ids and policy.alerts.security_hub
    assert policy.contract("transactions").drift is not None
    assert policy.stages["final-prod"].break_glass.approvers == ("vp-engineering@example.com", "ciso@example.com")
    with pytest.raises(KeyError, match="no contract named 'nope'"):
        policy.contract("nope")
