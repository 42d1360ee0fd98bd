"""Where this Stagewarden runs: its account, its stack, its trail bucket (read once from the environment).

The offline scanner has none of these (every field None): it contains nothing, and rules
that watch Stagewarden itself (its rules, functions, trail bucket) need to know it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Mapping

from pydantic import BaseModel, ConfigDict, Field

_LOG_KEY = re.compile(r"^AWSLogs/(?:(?P<org>o-[a-z0-9]{10,32})/)?(?P<account>\d{12})/CloudTrail/")
_DIGEST = re.compile(r"^AWSLogs/(?:o-[a-z0-9]{10,32}/)?\d{12}/CloudTrail-(?:Digest|Insight)/")


class DeploymentEnv(BaseModel):
    """``STAGEWARDEN_ACCOUNT_ID``, ``STAGEWARDEN_STACK_NAME``, ``STAGEWARDEN_TRAIL_BUCKET`` (template.yaml)."""

    model_config = ConfigDict(frozen=True)

    account_id: str | None = Field(default=None, pattern=r"^\d{12}$")
    stack_name: str | None = Field(default=None, min_length=1, max_length=128)
    trail_bucket: str | None = Field(default=None, min_length=3, max_length=63)


@dataclass(frozen=True)
class Deployment:
    account: str | None = None
    stack_name: str | None = None
    trail_bucket: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Deployment":
        env = os.environ if environ is None else environ
        values = {name: env.get(f"STAGEWARDEN_{name.upper()}") or None for name in DeploymentEnv.model_fields}
        parsed = DeploymentEnv.model_validate(values)
        return cls(parsed.account_id, parsed.stack_name, parsed.trail_bucket)

    def owns(self, name: str | None) -> bool:
        """Is this (function, rule, role) name one of the stack's own? CloudFormation names them ``<stack>-<LogicalId>-…``."""
        if not self.stack_name or not name:
            return False
        name = name.rsplit(":", 1)[-1] if name.startswith("arn:") else name
        name = name.rsplit("/", 1)[-1]
        return name.startswith(self.stack_name + "-")

    def log_source_problem(self, bucket: str, key: str, accounts: tuple[str, ...], org_id: str | None) -> str | None:
        """Why this object is not a log file Stagewarden may read (None: it is).

        Only ``AWSLogs/<organisation account>/CloudTrail/…`` (and, for an organisation trail,
        ``AWSLogs/<org id>/<account>/CloudTrail/…``) in the configured trail bucket.
        """
        if self.trail_bucket and bucket != self.trail_bucket:
            return f"bucket {bucket} is not the configured trail bucket {self.trail_bucket}"
        match = _LOG_KEY.match(key)
        if match is None:
            return "the key is not under AWSLogs/<account>/CloudTrail/ (or AWSLogs/<org id>/<account>/CloudTrail/)"
        org, account = match.group("org"), match.group("account")
        if org is not None and org != org_id:
            return (f"organisation {org} in the key is not organization.org_id ({org_id})" if org_id
                    else f"the key names organisation {org} but the policy sets no organization.org_id")
        known = accounts or ((self.account,) if self.account else ())
        if known and account not in known:
            return f"account {account} in the key is not one of the organisation's accounts"
        return None


def is_digest(key: str) -> bool:
    """CloudTrail digest and Insights files: delivered beside the log files, never read."""
    return bool(_DIGEST.match(key))
