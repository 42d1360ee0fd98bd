"""What every policy field and template parameter does today, and which code reads it.

"A documented setting is read by code, or it does not exist." This registry is the one
answer to "what does this field do?": ``stagewarden policy explain --fields`` prints it,
the README's settings table is generated from it (``stagewarden policy fields
--format markdown``, checked by a test), and ``tests/unit/stage_policy/test_fields.py``
holds it to the model: every field of :class:`~stage_policy.model.Policy` is covered by
exactly one entry, and every entry names a test that shows its effect.

Statuses:

* ``active``: read by a running control; ``reader`` says where.
* ``validation``: constrains other fields when the policy is loaded; no control reads it.
* ``descriptive``: shown by ``policy explain``; no control reads it.
* ``not built``: the capability that will read it does not exist yet; setting it does
  nothing today, and ``policy explain`` says so.

Entries match a field path exactly, or every path under a prefix ending in ``.``.
Not imported by any handler.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Status = Literal["active", "validation", "descriptive", "not built"]


@dataclass(frozen=True)
class Field:
    path: str
    status: Status
    reader: str
    effect: str
    test: str  # tests/<file>.py::<test name> showing the effect


FIELDS: tuple[Field, ...] = (
    Field("version", "validation", "stage_policy.model.Policy", "must be 1",
          "tests/unit/stage_policy/test_invalid_policies.py::test_invalid_policy_is_rejected_with_its_field_path"),
    Field("framework", "active", "stage_policy.presets.apply_preset", "the preset whose stages the policy's own are merged over",
          "tests/unit/stage_policy/test_presets.py::test_override_merges_over_the_preset_and_keeps_the_rest"),
    Field("defaults.mode", "active", "stage_policy.executor.effective_mode",
          "enforce or dry_run for stages without their own mode, under the deploy-time DefaultRemediationMode ceiling",
          "tests/unit/stage_policy/test_kit.py::test_effective_mode_deploy_time_is_a_ceiling"),
    Field("organization.account_ids", "active", "exfil.rules (external_statements, replication, shares), exfil.deployment",
          "accounts that are inside; a grant to any other is external; log files are read only under AWSLogs/<one of them>/CloudTrail/",
          "tests/unit/exfiltration/test_rules.py::test_policies_granting_outside_the_organisation_are_external"),
    Field("organization.org_id", "active", "exfil.rules (conditions pinning '*'), exfil.deployment (organisation-trail keys)",
          "a bucket policy's aws:PrincipalOrgID condition is inside only if it names this id; AWSLogs/<org id>/… keys need it",
          "tests/unit/exfiltration/test_rules.py::test_a_principal_org_id_condition_needs_organization_org_id_to_be_trusted"),
    Field("organization.vpc_endpoint_ids", "active", "exfil.engine (exfil.outside-vpce, exfil.instance-credentials), exfil.rules",
          "reads through these endpoints are inside; any other endpoint is outside; aws:SourceVpce conditions naming them pin '*'",
          "tests/unit/exfiltration/test_engine.py::test_reads_from_a_public_address_without_the_endpoint_are_outside_vpce"),
    Field("organization.allowed_cidrs", "active", "exfil.engine (exfil.outside-vpce, exfil.instance-credentials), exfil.contain",
          "reads and instance credentials from these networks are inside; the perimeter of an instance-credentials deny",
          "tests/unit/exfiltration/test_engine.py::test_private_addresses_and_allowed_networks_are_normal"),
    Field("organization.protected_roles", "active", "exfil.contain.protected_reason, warden.engine (session denials)",
          "role name or ARN globs never contained (alert only, the finding says why)",
          "tests/unit/exfiltration/test_engine.py::test_protected_roles_are_never_contained"),
    Field("organization.service_principals", "active", "exfil.engine (access.prod-human)",
          "ARN globs of automation, never counted as humans; a bucket policy granting one outside the organisation is still external",
          "tests/unit/exfiltration/test_redteam_rules.py::test_a_listed_service_principal_is_never_a_human"),
    Field("safety.min_retention_days", "active", "stage_policy.model.cross_check, keeper.plan (owner rules)",
          "no stage or prefix class may expire data sooner; an owner's lifecycle rule below it is critical",
          "tests/unit/stage_policy/test_invalid_policies.py::test_invalid_policy_is_rejected_with_its_field_path"),
    Field("safety.max_deletions_per_run", "active", "stage_policy.executor.Executor (cap 'deletions'), keeper.plan",
          "version deletions per run across buckets; the sweep stops there with retention.cap-reached and resumes next run",
          "tests/unit/retention/test_app.py::test_scenario_the_cap_stops_the_run_and_the_next_run_continues"),
    Field("safety.audit_log_retention_days", "active", "keeper.plan (audit buckets)",
          "a lifecycle rule deleting audit logs (trail, policy bucket) sooner is audit.tamper",
          "tests/unit/retention/test_plan.py::test_audit_buckets_flag_rules_deleting_logs_sooner_than_the_audit_retention"),
    Field("safety.max_revocations_per_run", "active", "stage_policy.executor.Executor (cap 'revocations')",
          "session revocations per invocation, across the whole SQS batch",
          "tests/unit/exfiltration/test_app.py::test_max_revocations_per_run_caps_the_whole_batch_not_each_record"),
    Field("alerts.min_severity", "active", "stage_policy.publish.FindingPublisher.publish, courier.handler.record_handler",
          "findings below it are neither published nor delivered to Slack or Security Hub",
          "tests/unit/alerts/test_handler.py::test_findings_below_min_severity_are_not_delivered"),
    Field("alerts.dedup_window_minutes", "active", "stage_policy.publish.FindingPublisher.publish, courier.state.DeliveryState",
          "one alert per incident per window, at publishing and at delivery (one Slack post; repeats counted); "
          "an escalation is posted at once",
          "tests/unit/alerts/test_handler.py::test_after_the_window_the_incident_posts_again_and_says_how_many_were_held"),
    Field("alerts.slack_webhook_secret", "active", "courier.pipeline.check_secret, courier.slack.WebhookSecret",
          "the Secrets Manager secret with the incoming-webhook URL (or URLs by severity); null: no Slack. "
          "Must be the template's SlackWebhookSecretName (the only secret AlertFunction may read)",
          "tests/unit/alerts/test_handler.py::test_no_slack_secret_in_the_policy_means_security_hub_only"),
    Field("alerts.email", "not built", "(alert delivery)",
          "not read: e-mail goes to the template parameter AlertEmail's SNS subscription, filtered by AlertEmailMinSeverity",
          "tests/unit/stage_policy/test_fields.py::test_explain_says_which_set_fields_do_nothing_yet"),
    Field("alerts.security_hub", "active", "courier.pipeline.decide (ImportToSecurityHub)",
          "true: every finding is imported into Security Hub (ASFF, one finding per incident, updated by repeats)",
          "tests/unit/alerts/test_handler.py::test_security_hub_off_in_the_policy_means_slack_only"),
    Field("stages.<name>.description", "descriptive", "stagewarden policy explain", "free text",
          "tests/unit/cli/test_cli.py::test_policy_explain_one_stage_as_json_lines"),
    Field("stages.<name>.production_data", "descriptive", "stagewarden policy explain", "whether the stage holds production data",
          "tests/unit/stage_policy/test_presets.py::test_five_stage_has_infra_stages_without_production_data"),
    Field("stages.<name>.interactive_access", "active", "exfil.engine (access.prod-human), warden.engine (breakglass.unapproved)",
          "none: any human access to the stage's data (a copy into it included), and any human session of its roles, is "
          "flagged unless made by a session approved under an open break-glass grant (the grant's principal's, within the "
          "grant); read-only: a human's write to its data (Put*, Delete*, Copy*, "
          "multipart uploads, RestoreObject, a copy into it) is flagged, reads are not",
          "tests/unit/exfiltration/test_engine.py::test_humans_reading_final_prod_are_flagged_unless_a_break_glass_grant_is_active"),
    Field("stages.<name>.retention.", "active", "keeper.plan (RetentionFunction, stagewarden retention plan/apply)",
          "the lifecycle rules each stage bucket must carry and what the sweep deletes; permanent stages expire nothing",
          "tests/unit/retention/test_plan.py::test_the_lab_requires_a_default_rule_one_rule_per_class_and_the_delete_marker_rule"),
    Field("stages.<name>.retention.abort_multipart_days", "active", "keeper.plan.required_rules",
          "incomplete multipart uploads are aborted after this many days",
          "tests/unit/retention/test_plan.py::test_abort_multipart_days_is_read_from_the_policy"),
    Field("stages.<name>.download", "active", "exfil.engine (exfil.presigned-url, exfil.outside-vpce), Exfiltration.daily_limits",
          "denied: pre-signed URL and outside reads are flagged, and a daily budget applies by default",
          "tests/unit/exfiltration/test_engine.py::test_presigned_url_reads_on_a_download_denied_stage_are_found"),
    Field("stages.<name>.exfiltration.max_objects", "active", "exfil.engine (exfil.bulk-download)",
          "distinct objects per session per window",
          "tests/unit/exfiltration/test_engine.py::test_above_the_object_threshold_a_contained_bulk_download_fires_with_its_evidence"),
    Field("stages.<name>.exfiltration.max_bytes", "active", "exfil.engine (exfil.bulk-download)", "bytes per session per window",
          "tests/unit/exfiltration/test_engine.py::test_the_byte_threshold_fires_on_few_large_objects"),
    Field("stages.<name>.exfiltration.window_minutes", "active", "exfil.engine (exfil.bulk-download)", "the sliding window",
          "tests/unit/exfiltration/test_engine.py::test_reads_further_apart_than_the_window_do_not_add_up"),
    Field("stages.<name>.exfiltration.daily_max_objects", "active", "exfil.engine (exfil.daily-budget)",
          "distinct objects per session per 24 hours; unset: 10,000 on a download-denied stage, none where download is allowed",
          "tests/unit/exfiltration/test_engine.py::test_reading_just_under_the_window_all_day_exceeds_the_daily_budget"),
    Field("stages.<name>.exfiltration.daily_max_bytes", "active", "exfil.engine (exfil.daily-budget)",
          "bytes per session per 24 hours; unset: 5 GiB on a download-denied stage, none where download is allowed",
          "tests/unit/exfiltration/test_engine.py::test_the_daily_budget_counts_bytes_too"),
    Field("stages.<name>.exfiltration.exempt_principals", "active", "stage_policy.model.Exfiltration.is_exempt",
          "ARN globs (sessions or their roles) exempt from the volume thresholds only; pre-signed and outside reads still alert",
          "tests/unit/exfiltration/test_engine.py::test_exempt_principals_still_alert_on_presigned_and_outside_reads"),
    Field("stages.<name>.exfiltration.response", "active", "exfil.engine._decide",
          "contain: the decision carries containment actions; alert: findings only",
          "tests/unit/exfiltration/test_app.py::test_scenario_bulk_download_in_a_log_file_is_detected_and_the_session_denied"),
    Field("stages.<name>.exfiltration.containment", "active", "exfil.contain.containment",
          "session: deny the offending session only (aws:userid, aws:SourceIdentity); role: revoke every older session",
          "tests/unit/exfiltration/test_app.py::test_whole_role_revocation_where_the_stage_says_so"),
    Field("stages.<name>.exfiltration.learning_days", "active", "exfil.engine (exfil.new-client-tool)",
          "days a session's client tools are learned before a new one is flagged",
          "tests/unit/exfiltration/test_engine.py::test_a_new_client_tool_after_the_learning_period_is_found"),
    Field("stages.<name>.break_glass.allowed", "active", "warden.rules.break_glass_of",
          "true: the stage's roles are break-glass roles (grants, recorded baselines, direct changes checked, "
          "sessions without a grant are critical findings)",
          "tests/unit/breakglass/test_grant.py::test_refusals_change_nothing"),
    Field("stages.<name>.break_glass.max_duration_minutes", "active", "warden.rules.grant_refusals, warden.rules.console_approval",
          "the longest grant (never above 720); a longer one is refused, a longer direct activation reverted",
          "tests/unit/breakglass/test_grant.py::test_refusals_change_nothing"),
    Field("stages.<name>.break_glass.required_approval_tags", "active", "warden.rules.approval_tags, warden.rules.console_approval",
          "tags put on the role while a grant is open (keys ending approved-by carry the approver, ticket the ticket; "
          "others need --tag); a direct activation needs them all",
          "tests/unit/breakglass/test_grant.py::test_a_required_approval_tag_beyond_approver_and_ticket_must_be_given"),
    Field("stages.<name>.break_glass.approvers", "active", "warden.rules.grant_refusals, warden.rules.console_approval",
          "who may approve a grant (and make a direct activation themselves); anyone else is refused",
          "tests/unit/breakglass/test_grant.py::test_refusals_change_nothing"),
    Field("stages.<name>.break_glass.post_incident_review", "active", "warden.engine.Warden._review",
          "true: closing a grant creates its review record (sessions, CloudTrail activity, due date)",
          "tests/unit/breakglass/test_expiry.py::test_no_review_record_when_the_stage_asks_for_none"),
    Field("stages.<name>.break_glass.review_due_days", "active", "warden.engine.Warden._review",
          "the review is due this many days after the grant closes; breakglass.review-due after that",
          "tests/unit/breakglass/test_expiry.py::test_scenario_expiry_through_the_sweep_restores_revokes_verifies_and_leaves_a_review"),
    Field("stages.<name>.mode", "active", "stage_policy.executor.effective_mode",
          "enforce or dry_run for this stage, under the deploy-time ceiling",
          "tests/unit/stage_policy/test_kit.py::test_effective_mode_deploy_time_is_a_ceiling"),
    Field("stages.<name>.posture.encryption", "active", "keeper.posture.plan (posture.encryption)",
          "the weakest default encryption accepted (aws:kms or AES256; null: not checked); below it, PutBucketEncryption",
          "tests/unit/retention/test_posture.py::test_scenario_deleted_encryption_is_put_back_as_sse_kms"),
    Field("stages.<name>.posture.kms_key", "active", "keeper.posture.plan (posture.encryption)",
          "with a key ARN, id or alias named, an aws:kms bucket must use that key",
          "tests/unit/retention/test_posture.py::test_encryption_checks_the_algorithm_and_the_named_key"),
    Field("stages.<name>.posture.public_access.", "active", "keeper.posture.plan (posture.public-access)",
          "each Block Public Access setting required on; flags already on stay on",
          "tests/unit/retention/test_posture.py::test_scenario_a_deleted_public_access_block_is_restored_within_one_event"),
    Field("stages.<name>.posture.tls_only", "active", "keeper.posture.plan (posture.tls)",
          "a TLS-only deny statement merged into the bucket policy, other statements untouched; past 20 KB a critical finding",
          "tests/unit/retention/test_posture.py::test_scenario_a_policy_without_tls_gets_the_statement_merged_in_keeping_the_owners"),
    Field("stages.<name>.posture.versioning", "active", "keeper.posture.plan (posture.versioning)",
          "versioning enabled (never suspended); permanent stages are held to it by retention already",
          "tests/unit/retention/test_posture.py::test_scenario_suspended_versioning_on_the_lab_is_re_enabled"),
    Field("stages.<name>.posture.access_logging.", "active", "keeper.posture.plan (posture.logging)",
          "server access logs to target_bucket/target_prefix (null: logging not checked, never removed)",
          "tests/unit/retention/test_posture.py::test_logging_is_set_to_the_named_target_and_object_lock_is_reported"),
    Field("stages.<name>.posture.object_lock", "active", "keeper.posture.plan (posture.object-lock)",
          "true: a bucket without Object Lock is reported (immutable stages: by retention.object-lock-missing)",
          "tests/unit/retention/test_posture.py::test_logging_is_set_to_the_named_target_and_object_lock_is_reported"),
    Field("resources.tag_key", "active", "stage_policy.mapping", "the tag whose value names a resource's stage; wins over names",
          "tests/unit/stage_policy/test_mapping.py::test_tag_wins_over_the_name_pattern"),
    Field("resources.buckets[].", "active", "stage_policy.mapping.stage_for_bucket", "name globs, first match wins",
          "tests/unit/stage_policy/test_mapping.py::test_name_pattern_maps_a_bucket_given_by_name_or_arn"),
    Field("resources.roles[].", "active", "stage_policy.mapping.stage_for_role", "name globs, first match wins",
          "tests/unit/stage_policy/test_mapping.py::test_assumed_role_sessions_map_to_the_roles_stage"),
    Field("contracts[].min_rows", "active", "gate.engine.Validator.report (check min_rows)",
          "fewer data rows fail the contract (default 1: empty and header-only files fail)",
          "tests/unit/schema_gate/test_types.py::test_min_rows_zero_lets_an_empty_file_with_its_header_pass_and_a_higher_minimum_fails_a_short_one"),
    Field("contracts[].csv.null_values", "active", "gate.readers._csv (Arrow ConvertOptions.null_values)",
          "field texts read as missing values in every column, strings too (default [\"\"]; the list replaces it)",
          "tests/unit/schema_gate/test_types.py::test_declared_null_markers_are_nulls_in_every_column_type_strings_included"),
    Field("model_registries[].name", "active", "gate.pipeline._decide_artifact", "names the registry in findings and tags",
          "tests/unit/schema_gate/test_registry.py::test_scenario_a_model_passes_is_registered_and_cannot_be_overwritten"),
    Field("model_registries[].stage", "active", "gate.pipeline.registry_for", "the stage whose buckets hold the registry",
          "tests/unit/schema_gate/test_registry.py::test_scenario_a_dataset_in_the_model_registry_is_alerted_and_quarantined"),
    Field("model_registries[].bucket", "active", "gate.pipeline.registry_for", "bucket glob within the stage (none: every bucket)",
          "tests/unit/schema_gate/test_registry.py::test_scenario_a_dataset_in_the_model_registry_is_alerted_and_quarantined"),
    Field("model_registries[].prefix", "active", "gate.pipeline.registry_for, gate.actions.fence",
          "objects under it are judged (datasets quarantined, models registered) and unreadable until passed",
          "tests/unit/schema_gate/test_registry.py::test_scenario_a_dataset_in_the_model_registry_is_alerted_and_quarantined"),
    Field("model_registries[].max_array_bytes", "active", "gate.artifacts.sniff", "NumPy arrays above it are data, not weights",
          "tests/unit/schema_gate/test_registry.py::test_max_array_bytes_decides_when_an_array_is_data"),
    Field("model_registries[].allow", "active", "gate.pipeline._decide_artifact", "key globs that are not judged (model cards)",
          "tests/unit/schema_gate/test_registry.py::test_allowed_keys_are_not_judged"),
    Field("model_registries[].severity", "active", "gate.pipeline._decide_artifact",
          "severity of data.in-model-registry and registry.overwrite",
          "tests/unit/schema_gate/test_registry.py::test_scenario_a_dataset_in_the_model_registry_is_alerted_and_quarantined"),
    Field("exceptions.approvers", "active", "warden.timeboxed.grant_exception", "who may approve a time-boxed exception",
          "tests/unit/breakglass/test_exceptions.py::test_exception_refusals_change_nothing"),
    Field("exceptions.max_days", "active", "warden.timeboxed.grant_exception", "the longest exception; a later --until is refused",
          "tests/unit/breakglass/test_exceptions.py::test_exception_refusals_change_nothing"),
    Field("exceptions.buckets", "active", "warden.timeboxed.grant_exception",
          "bucket globs an exception may cover; any other bucket is refused (empty: none)",
          "tests/unit/breakglass/test_exceptions.py::test_exception_refusals_change_nothing"),
    Field("exceptions.review_interval_days", "active", "warden.timeboxed.sweep_exceptions",
          "an exception.review-due finding at each interval while the exception runs",
          "tests/unit/breakglass/test_exceptions.py::test_a_review_is_due_once_per_interval_however_many_sweeps_run"),
    Field("contracts[].", "active", "the schema gate (gate.engine, gate.pipeline)",
          "which objects are validated and how; see the schema gate section",
          "tests/unit/schema_gate/test_engine.py::test_every_planted_defect_is_counted_exactly_with_its_rows"),
)


@dataclass(frozen=True)
class Parameter:
    name: str
    reader: str
    effect: str


#: template.yaml parameters: where each one goes and what reads it.
PARAMETERS: tuple[Parameter, ...] = (
    Parameter("PolicyLocation", "STAGEWARDEN_POLICY_LOCATION -> stage_policy.settings.Settings.policy_location",
              "where every function reads the policy (empty: s3://<PolicyBucket>/policy.yaml)"),
    Parameter("DefaultRemediationMode", "STAGEWARDEN_DEFAULT_MODE -> stage_policy.executor.effective_mode",
              "a ceiling: dry_run forces dry run everywhere; enforce lets the policy's modes decide"),
    Parameter("AlertEmail", "AlertEmailSubscription, OperationsEmailSubscription (SNS e-mail subscriptions)",
              "optional address subscribed to the alerts topic (findings) and the operations topic (the alert DLQ alarm)"),
    Parameter("AlertEmailMinSeverity", "AlertEmailSubscription's filter policy",
              "the e-mail subscription receives findings at or above it (default high); alarms always pass"),
    Parameter("SlackWebhookSecretName", "IAM of AlertFunction (secretsmanager:GetSecretValue), STAGEWARDEN_SLACK_WEBHOOK_SECRET",
              "the one Slack webhook secret AlertFunction may read; alerts.slack_webhook_secret must name it"),
    Parameter("LogLevel", "POWERTOOLS_LOG_LEVEL -> Powertools Logger", "DEBUG, INFO, WARNING or ERROR"),
    Parameter("CloudTrailBucketName", "IAM scope, EventBridge rule, STAGEWARDEN_TRAIL_BUCKET -> exfil.deployment (log-file source "
              "check, trail-bucket tampering)", "your trail's bucket (empty: the stack creates one); only its CloudTrail keys are read"),
    Parameter("CloudTrailKmsKeyArn", "IAM (kms:Decrypt) of ExfiltrationFunction", "the key that encrypts log files, if any"),
    Parameter("DataBucketNamePrefix", "IAM scope (every S3 write) and EventBridge rules of the data functions",
              "required: name prefix of the stage data buckets; an empty prefix is refused"),
    Parameter("PermissionsBoundaryArn", "PermissionsBoundary of every role the stack creates",
              "your organisation's boundary; empty: the stack creates StagewardenBoundary"),
)


def entry_for(path: str) -> Field | None:
    """The entry covering a field path: an exact match, else the longest prefix entry."""
    best: Field | None = None
    for field in FIELDS:
        if field.path == path:
            return field
        if field.path.endswith(".") and path.startswith(field.path) and (best is None or len(field.path) > len(best.path)):
            best = field
    return best


def markdown() -> str:
    """The README's settings table (policy fields, then template parameters)."""
    lines = ["| Policy field | Status | Read by | Effect today |", "|---|---|---|---|"]
    for f in FIELDS:
        path = f.path + "*" if f.path.endswith(".") else f.path
        lines.append(f"| `{path}` | {f.status} | {f.reader} | {f.effect} |")
    lines += ["", "| Template parameter | Reaches | Effect |", "|---|---|---|"]
    for p in PARAMETERS:
        lines.append(f"| `{p.name}` | {p.reader} | {p.effect} |")
    return "\n".join(lines)
