"""The alert function's own environment (beyond ``stage_policy.settings.Settings``), read once."""

from __future__ import annotations

import os
from typing import Mapping

from courier.slack import is_loopback_endpoint
from pydantic import BaseModel, ConfigDict


class AlertSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    #: STAGEWARDEN_SLACK_WEBHOOK_SECRET, the template's SlackWebhookSecretName: the one secret IAM lets this function read.
    slack_webhook_secret: str = ""
    region: str = "us-east-1"
    #: AWS_ENDPOINT_URL on a loopback address: the local emulator, where http://127.0.0.1 webhooks are accepted.
    emulator: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "AlertSettings":
        env = os.environ if environ is None else environ
        return cls(
            slack_webhook_secret=env.get("STAGEWARDEN_SLACK_WEBHOOK_SECRET", ""),
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
            emulator=is_loopback_endpoint(env.get("AWS_ENDPOINT_URL")),
        )

    def secret_allowed(self, secret_id: str) -> bool:
        """Whether the policy's secret is the one the deployment grants (by name, or as that secret's ARN)."""
        granted = self.slack_webhook_secret
        return bool(granted) and (secret_id == granted or (secret_id.startswith("arn:") and f":secret:{granted}-" in secret_id))
