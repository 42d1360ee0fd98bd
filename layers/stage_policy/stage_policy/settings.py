"""Environment, read once at the edge into a typed model."""

from __future__ import annotations

import os
from typing import Mapping

from pydantic import BaseModel, ConfigDict, Field

from stage_policy.model import Mode


class Settings(BaseModel):
    """What every Stagewarden function reads from its environment (set by template.yaml)."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    policy_location: str = Field(min_length=1)
    alerts_topic_arn: str = Field(min_length=1)
    state_table: str = ""
    audit_table: str = ""
    default_mode: Mode = "dry_run"
    gate_role_arn: str = ""  # the schema gate's own role: the only reader of quarantined objects

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if environ is None else environ
        prefix = "STAGEWARDEN_"
        values = {name: env[prefix + name.upper()] for name in cls.model_fields if prefix + name.upper() in env}
        return cls.model_validate(values)
