"""moto_server for the local emulator, with bucket-policy statements that carry conditions left to AWS.

moto 5 evaluates a bucket policy without request context: a statement with a Condition
counts as matching every request whose action it names, so one conditional Deny refuses
every GET (or PUT) in the bucket, for every principal, the writer of the statement
included. The schema gate keeps such statements (deny reads until an object is tagged
passed, except for the gate's role), and on moto they would stop the gate itself. Here
moto's own check sees only the statements it can evaluate, those without conditions; the
conditional ones are not enforced by the emulator. tests/s3_fence.py evaluates them with
their conditions in the unit tests.

Run by ``stagewarden local up`` and ``stagewarden demo`` as ``python -m stagewarden.motoserver``
with moto_server's own arguments.
"""

from __future__ import annotations

import json
from typing import Any


def unconditional_only(bucket: Any, action: str, resource: str) -> Any:
    """moto's FakeBucket.get_permission over the statements without a Condition."""
    from moto.iam.access_control import IAMPolicy, PermissionResult

    if bucket.policy is None:
        return PermissionResult.NEUTRAL
    policy = json.loads(bucket.policy)
    statements = policy.get("Statement", [])
    kept = [s for s in ([statements] if isinstance(statements, dict) else statements) if "Condition" not in s]
    if not kept:
        return PermissionResult.NEUTRAL
    return IAMPolicy(json.dumps({**policy, "Statement": kept})).is_action_permitted(action, resource)


def install() -> None:
    from moto.s3 import models

    models.FakeBucket.get_permission = unconditional_only


def main() -> None:
    install()
    from moto.server import main as moto_main

    moto_main()


if __name__ == "__main__":
    main()
