"""The retention function's own environment, read once at the edge (the layer's Settings holds the shared part)."""

from __future__ import annotations

import os
from typing import Mapping

from pydantic import BaseModel, ConfigDict, Field


class RetentionSettings(BaseModel):
    """``STAGEWARDEN_AUDIT_BUCKETS``: comma-separated buckets holding audit logs (the trail bucket, the
    stack's own). Their lifecycle is watched for tampering; they are never reconciled or swept.
    ``STAGEWARDEN_SWEEP_MARGIN_SECONDS``: the daily run stops starting new work this long before the
    Lambda timeout, records where it stopped, and the next run continues there.
    """

    model_config = ConfigDict(frozen=True, defer_build=True)

    audit_buckets: tuple[str, ...] = ()
    sweep_margin_seconds: int = Field(default=90, ge=0)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "RetentionSettings":
        env = os.environ if environ is None else environ
        buckets = tuple(b.strip() for b in env.get("STAGEWARDEN_AUDIT_BUCKETS", "").split(",") if b.strip())
        values: dict[str, object] = {"audit_buckets": buckets}
        if env.get("STAGEWARDEN_SWEEP_MARGIN_SECONDS"):
            values["sweep_margin_seconds"] = env["STAGEWARDEN_SWEEP_MARGIN_SECONDS"]
        return cls.model_validate(values)
