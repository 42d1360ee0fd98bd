"""One alert per incident, at delivery: what the delivery state says, and whether this finding is posted now.

Pure. :class:`Incident` is the state table's item for one dedup key (``keys.alert_delivery``),
as :class:`courier.state.DeliveryState` reads it. Inside ``alerts.dedup_window_minutes`` an
incident is posted once; a repeat at a higher severity than any posted is posted at once
(an escalation); every other repeat is held back and counted, and the next post of the
incident says how many were.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from stage_policy.findings import SEVERITY_ORDER

SEVERITY_NAME = {rank: name for name, rank in SEVERITY_ORDER.items()}


@dataclass(frozen=True)
class Incident:
    dedup_key: str
    count: int  # occurrences in the current window
    window_start: int  # epoch seconds
    window_end: int
    last_seen: int
    top_rank: int  # highest severity seen in the window
    posted_rank: int | None = None  # highest severity posted in the window (None: nothing posted yet)
    posted_count: int = 0  # count at the last post
    claim_rank: int | None = None  # a post in flight (see DeliveryState.claim)
    claim_until: int = 0
    total: int = 0  # occurrences across windows, while the item lives (Security Hub's count)
    since: int = 0  # first occurrence across windows
    previous_held: int = 0  # repeats the previous window held back

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def post_reason(incident: Incident, rank: int, now: int) -> str | None:
    """Why a finding at ``rank`` is posted now, or None when it is held back."""
    if now >= incident.window_end:
        # counted in a window that has closed meanwhile (a retry after a failed post): post unless that window posted it
        return None if incident.posted_rank is not None and rank <= incident.posted_rank else "new incident"
    if incident.posted_rank is None:
        return "new incident" if not incident.previous_held else "new window"
    if rank > incident.posted_rank:
        return f"escalated from {SEVERITY_NAME[incident.posted_rank]} to {SEVERITY_NAME[rank]}"
    return None


def held_back(incident: Incident) -> int:
    """Repeats held back since the last post (the finding being posted is not one of them)."""
    return max(0, incident.count - incident.posted_count - 1)
