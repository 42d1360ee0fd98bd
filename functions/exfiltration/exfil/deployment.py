"""Where this Stagewarden runs: its account, its stack, its trail bucket (read once from the environment).

The offline scanner has none of these (every field None): it contains nothing, and rules
that watch Stagewarden itself (its rules, functions, trail bucket) need to know it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Mapping

_LOG_KEY = re.compile(r"^AWSLogs/(?:(?P<org>o-[a-z0-9]{10,32})/)?(?P<account>\d{12})/CloudTrail/")
_DIGEST = re.compile(r"^AWSLogs/(?:o-[a-z0-9]{10,32}/)?\d{12}/CloudTrail-(?:Digest|Insight)/")
#: ``STAGEWARDEN_<NAME>`` (set by template.yaml) -> what a valid value looks like
_ENV = {"account_id": re.compile(r"^\d{12}$"), "stack_name": re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,127}$"),
        "trail_bucket": re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")}


class DeploymentError(ValueError):
    """An environment variable of the deployment is set but invalid (named)."""


@dataclass(frozen=True)
class Deployment:
    account: str | None = None
    stack_name: str | None = None
    trail_bucket: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Deployment":
        """``STAGEWARDEN_ACCOUNT_ID``, ``STAGEWARDEN_STACK_NAME``, ``STAGEWARDEN_TRAIL_BUCKET``; unset means unknown.

        Checked by pattern, not a pydantic model: this runs in every cold start.
        """
        env = os.environ if environ is None else environ
        values: dict[str, str | None] = {}
        for name, pattern in _ENV.items():
            var = f"STAGEWARDEN_{name.upper()}"
            value = env.get(var) or None
            if value is not None and not pattern.match(value):
                raise DeploymentError(f"environment variable {var} is invalid ({value[:80]!r})")
            values[name] = value
        return cls(values["account_id"], values["stack_name"], values["trail_bucket"])

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
