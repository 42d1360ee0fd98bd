"""Which single-event rules look at which CloudTrail call: (eventSource, eventName) -> rules."""

from __future__ import annotations

from typing import Any, Callable

from exfil import rules, tamper
from exfil.rules import RuleContext, Verdict

Rule = Callable[[dict[str, Any], RuleContext], "Verdict | None"]

SINGLE_EVENT_RULES: dict[tuple[str, str], tuple[Rule, ...]] = {
    ("s3.amazonaws.com", "PutBucketPolicy"): (rules.bucket_policy, tamper.trail_bucket),
    ("s3.amazonaws.com", "DeleteBucketPolicy"): (tamper.trail_bucket,),
    ("s3.amazonaws.com", "PutBucketNotification"): (tamper.trail_bucket,),
    ("s3.amazonaws.com", "PutBucketNotificationConfiguration"): (tamper.trail_bucket,),
    ("s3.amazonaws.com", "PutBucketAcl"): (rules.bucket_acl,),
    ("s3.amazonaws.com", "PutBucketReplication"): (rules.replication,),
    ("ec2.amazonaws.com", "ModifySnapshotAttribute"): (rules.snapshot_share,),
    ("ec2.amazonaws.com", "ModifyImageAttribute"): (rules.snapshot_share,),
    ("rds.amazonaws.com", "ModifyDBSnapshotAttribute"): (rules.snapshot_share,),
    ("rds.amazonaws.com", "ModifyDBClusterSnapshotAttribute"): (rules.snapshot_share,),
    **{("cloudtrail.amazonaws.com", name): (tamper.trail,) for name in ("StopLogging", "DeleteTrail", "PutEventSelectors", "UpdateTrail")},
    **{("events.amazonaws.com", name): (tamper.eventbridge,) for name in ("PutRule", "DisableRule", "DeleteRule", "RemoveTargets")},
    **{("lambda.amazonaws.com", name): (tamper.lambda_function,) for name in tamper.LAMBDA_NAMES},
}
SINGLE_EVENT_NAMES = frozenset(name for _, name in SINGLE_EVENT_RULES)
