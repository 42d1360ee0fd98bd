"""A table of invalid policies: each is rejected, and the error names the file and the field path."""

from __future__ import annotations

import textwrap

import pytest

from stage_policy.loader import PolicyError, load, loads

LAB = "{production_data: true, interactive_access: read-write, download: denied, retention: {default_days: 90}}"

CONTRACT = """
contracts:
  - name: tx
    stage: prod-discovery
    prefix: landing/
    format: csv
    columns:
      - {name: id, type: int}
      - {name: amount, type: float}
"""

# (id, document, expected field path, fragment of the message)
INVALID = [
    ("negative-default-days", "framework: two-stage\nstages: {prod-discovery: {retention: {default_days: -1}}}",
     "stages.prod-discovery.retention.default_days", "must be >= 1"),
    ("zero-default-days", "framework: two-stage\nstages: {prod-discovery: {retention: {default_days: 0}}}",
     "stages.prod-discovery.retention.default_days", "must be >= 1"),
    ("below-safety-floor", "framework: two-stage\nstages: {prod-discovery: {retention: {default_days: 3}}}",
     "stages.prod-discovery.retention.default_days", "below the safety floor of 7 days"),
    ("prefix-class-below-floor", "framework: two-stage\nstages: {prod-discovery: {retention: {prefix_classes: [{prefix: raw/, days: 2}]}}}",
     "stages.prod-discovery.retention.prefix_classes[0].days", "below the safety floor"),
    ("expiry-on-permanent", "framework: two-stage\nstages: {final-prod: {retention: {prefix_classes: [{prefix: raw/, days: 30}]}}}",
     "stages.final-prod.retention.prefix_classes", "not allowed on a permanent stage"),
    ("default-days-on-permanent", "framework: two-stage\nstages: {final-prod: {retention: {default_days: 30}}}",
     "stages.final-prod.retention.default_days", "permanent stage cannot expire"),
    ("overlapping-prefixes", "framework: two-stage\nstages: {prod-discovery: {retention: {prefix_classes: [{prefix: raw/, days: 30}, {prefix: raw/eu/, days: 60}]}}}",
     "stages.prod-discovery.retention.prefix_classes[1].prefix", "overlaps prefix_classes[0]"),
    ("prefix-without-slash", "framework: two-stage\nstages: {prod-discovery: {retention: {prefix_classes: [{prefix: raw, days: 30}]}}}",
     "stages.prod-discovery.retention.prefix_classes[0].prefix", "does not match"),
    ("break-glass-above-12h", "framework: two-stage\nstages: {final-prod: {break_glass: {max_duration_minutes: 1440}}}",
     "stages.final-prod.break_glass.max_duration_minutes", "above the 12 hour limit"),
    ("break-glass-without-approval-tags", "framework: two-stage\nstages: {final-prod: {break_glass: {required_approval_tags: []}}}",
     "stages.final-prod.break_glass.required_approval_tags", "at least one approval tag"),
    ("break-glass-review-due-zero", "framework: two-stage\nstages: {final-prod: {break_glass: {review_due_days: 0}}}",
     "stages.final-prod.break_glass.review_due_days", "must be >= 1"),
    ("exceptions-longer-than-a-year", "framework: two-stage\nexceptions: {max_days: 400}",
     "exceptions.max_days", "must be <= 366"),
    ("exceptions-never-reviewed", "framework: two-stage\nexceptions: {max_days: 30, review_interval_days: 90}",
     "exceptions.review_interval_days", "no exception would ever be reviewed"),
    ("exceptions-every-bucket", "framework: two-stage\nexceptions: {buckets: ['*']}",
     "exceptions.buckets[0]", "would cover every bucket"),
    ("unknown-stage-in-bucket-map", "framework: two-stage\nresources: {buckets: [{pattern: 'lab-*', stage: prod-lab}]}",
     "resources.buckets[0].stage", "unknown stage 'prod-lab'"),
    ("unknown-stage-in-role-map", "framework: two-stage\nresources: {roles: [{pattern: 'Admin*', stage: prod}]}",
     "resources.roles[0].stage", "unknown stage 'prod'"),
    ("unknown-field", "framework: two-stage\nstages: {prod-discovery: {retension: {default_days: 90}}}",
     "stages.prod-discovery.retension", "unknown field"),
    ("bad-mode", "framework: two-stage\nstages: {prod-discovery: {mode: yolo}}",
     "stages.prod-discovery.mode", "must be one of"),
    ("bad-interactive-access", "framework: two-stage\nstages: {final-prod: {interactive_access: admin}}",
     "stages.final-prod.interactive_access", "must be one of"),
    ("missing-required-stage-field", f"stages: {{lab: {{interactive_access: none, download: denied, retention: {{default_days: 30}}}}}}",
     "stages.lab.production_data", "is required"),
    ("no-stages", "framework: custom\nstages: {}", "stages", "must not be empty"),
    ("unknown-framework", "framework: seven-stage\nstages: {lab: " + LAB + "}", "framework", "must be one of"),
    ("window-not-a-number", "framework: two-stage\nstages: {prod-discovery: {exfiltration: {window_minutes: ten}}}",
     "stages.prod-discovery.exfiltration.window_minutes", "must be a whole number"),
    ("window-too-long", "framework: two-stage\nstages: {prod-discovery: {exfiltration: {window_minutes: 5000}}}",
     "stages.prod-discovery.exfiltration.window_minutes", "must be <= 1440"),
    ("retention-required-unless-permanent", "stages: {lab: {production_data: true, interactive_access: none, download: denied, retention: {}}}",
     "stages.lab.retention.default_days", "required unless retention is permanent"),
    ("immutable-but-expiring", "framework: two-stage\nstages: {prod-discovery: {retention: {immutable: true}}}",
     "stages.prod-discovery.retention.immutable", "only a permanent stage"),
    ("bad-account-id", "framework: two-stage\norganization: {account_ids: ['12345']}", "organization.account_ids[0]", "does not match"),
    ("bad-stage-name", "stages: {Prod_Lab: " + LAB + "}", "stages.Prod_Lab", "does not match"),
    ("contract-unknown-stage", "framework: two-stage" + CONTRACT.replace("stage: prod-discovery", "stage: prod-lab"),
     "contracts[0].stage", "unknown stage 'prod-lab'"),
    ("contract-unique-key-unknown-column", "framework: two-stage" + CONTRACT + "    unique_key: [tx_id]\n",
     "contracts[0].unique_key[0]", "unknown column 'tx_id'"),
    ("contract-min-above-max", "framework: two-stage" + CONTRACT.replace("{name: amount, type: float}", "{name: amount, type: float, min: 10, max: 1}"),
     "contracts[0].columns[1].min", "greater than max"),
    ("contract-bad-regex", "framework: two-stage" + CONTRACT.replace("{name: amount, type: float}", "{name: email, type: string, regex: '([a-z'}"),
     "contracts[0].columns[1].regex", "not a valid regular expression"),
    ("contract-bad-column-type", "framework: two-stage" + CONTRACT.replace("type: float", "type: decimal"),
     "contracts[0].columns[1].type", "must be one of"),
    ("contract-null-fraction-above-1", "framework: two-stage" + CONTRACT + "    max_null_fraction: 1.5\n",
     "contracts[0].max_null_fraction", "must be <= 1"),
    ("contract-drift-unknown-column", "framework: two-stage" + CONTRACT + "    drift: {baseline: s3://b/k.json, columns: [score]}\n",
     "contracts[0].drift.columns[0]", "unknown column 'score'"),
    ("contract-validated-inside-landing", "framework: two-stage" + CONTRACT + "    validated_prefix: landing/ok/\n",
     "contracts[0].validated_prefix", "must not overlap"),
    ("contract-duplicate-column", "framework: two-stage" + CONTRACT.replace("{name: amount, type: float}", "{name: id, type: float}"),
     "contracts[0].columns[1].name", "duplicate column 'id'"),
]


@pytest.mark.parametrize("document, path, fragment", [case[1:] for case in INVALID], ids=[case[0] for case in INVALID])
def test_invalid_policy_is_rejected_with_its_field_path(tmp_path, document: str, path: str, fragment: str) -> None:
    # Given a policy file with one defect
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(textwrap.dedent(document))

    # When it is loaded
    with pytest.raises(PolicyError) as caught:
        load(policy_file)

    # Then one of the lines names the file, the exact field path and what is wrong
    lines = caught.value.lines()
    matching = [line for line in lines if line.startswith(f"{policy_file}: {path}: ")]
    assert matching, f"no error for {path!r} in {lines}"
    assert fragment in matching[0]


def test_the_table_has_at_least_twenty_cases() -> None:
    assert len(INVALID) >= 20


def test_every_field_error_is_reported_at_once() -> None:
    with pytest.raises(PolicyError) as caught:
        loads("framework: two-stage\nstages: {prod-discovery: {retention: {default_days: 0}, mode: x}, final-prod: {download: maybe}}", "p.yaml")

    paths = {path for path, _ in caught.value.problems}
    assert paths == {"stages.prod-discovery.retention.default_days", "stages.prod-discovery.mode", "stages.final-prod.download"}


@pytest.mark.parametrize(
    "text, fragment",
    [("stages: [a, b", "not valid YAML"), ("- just\n- a list\n", "must be a mapping"), ("", "must be a mapping")],
)
def test_unparseable_documents_name_the_file(text: str, fragment: str) -> None:
    with pytest.raises(PolicyError) as caught:
        loads(text, "broken.yaml")

    assert caught.value.lines()[0].startswith("broken.yaml: ") and fragment in str(caught.value)


def test_a_missing_file_is_a_policy_error_naming_it(tmp_path) -> None:
    with pytest.raises(PolicyError, match="nope.yaml: cannot read file"):
        load(tmp_path / "nope.yaml")


# ------------------------------------------------------------------ misspelt keys: one error, with a suggestion
CUSTOM_STAGE = "stages:\n  lab:\n    production_data: true\n    interactive_access: none\n    download: denied\n"

MISSPELT = [
    ("top-level-stage", "stage:\n  lab: {}\n", "stage", "unknown field (did you mean 'stages'?)"),
    ("top-level-alert", "framework: three-stage\nalert: {min_severity: high}\n", "alert", "unknown field (did you mean 'alerts'?)"),
    ("top-level-resource", "framework: two-stage\nresource: {}\n", "resource", "(did you mean 'resources'?)"),
    ("top-level-nothing-close", "framework: two-stage\nzzz: 1\n", "zzz", "unknown field (known: version, framework, defaults,"),
    ("stage-key-without-required-pair", CUSTOM_STAGE + "    retension: {default_days: 30}\n",
     "stages.lab.retension", "unknown field (did you mean 'retention'?)"),
    ("stage-key-in-preset-stage", "framework: two-stage\nstages: {final-prod: {exfiltraton: {max_objects: 5}}}\n",
     "stages.final-prod.exfiltraton", "(did you mean 'exfiltration'?)"),
    ("alerts-key", "framework: two-stage\nalerts: {min_sev: high}\n", "alerts.min_sev", "(did you mean 'min_severity'?)"),
    ("safety-key", "framework: two-stage\nsafety: {max_deletions: 3}\n", "safety.max_deletions", "(did you mean 'max_deletions_per_run'?)"),
    ("defaults-key", "framework: two-stage\ndefaults: {mod: enforce}\n", "defaults.mod", "(did you mean 'mode'?)"),
    ("break-glass-key", "framework: two-stage\nstages: {final-prod: {break_glass: {aprovers: [a]}}}\n",
     "stages.final-prod.break_glass.aprovers", "(did you mean 'approvers'?)"),
    ("column-key-without-empty-list-pair", "framework: two-stage" + CONTRACT.replace("{name: amount, type: float}", "{name: amount, type: float, requird: true}"),
     "contracts[0].columns[1].requird", "(did you mean 'required'?)"),
]


@pytest.mark.parametrize("document, path, fragment", [case[1:] for case in MISSPELT], ids=[case[0] for case in MISSPELT])
def test_a_misspelt_key_is_one_error_naming_it_with_a_suggestion(document: str, path: str, fragment: str) -> None:
    with pytest.raises(PolicyError) as caught:
        loads(document, "policy.yaml")

    lines = caught.value.lines()
    assert len(lines) == 1, lines  # not "unknown field" plus "stages is required" / "must not be empty"
    assert lines[0].startswith(f"policy.yaml: {path}: ") and fragment in lines[0]


def test_several_unknown_top_level_keys_are_each_named() -> None:
    with pytest.raises(PolicyError) as caught:
        loads("framework: two-stage\nstage: {}\nalert: {}\n", "p.yaml")

    assert [path for path, _ in caught.value.problems] == ["stage", "alert"]


def test_a_file_that_is_not_utf8_is_a_policy_error_naming_it(tmp_path) -> None:
    from stage_policy.loader import load

    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("framework: two-stage\n# caf\xe9\n".encode("latin-1"))
    with pytest.raises(PolicyError) as caught:
        load(bad)
    assert caught.value.lines() == [f"{bad}: not UTF-8 text (byte 0xe9 at offset 26)"]
