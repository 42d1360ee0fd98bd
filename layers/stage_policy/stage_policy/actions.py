"""Decide, then act: the typed actions every guardrail returns, and the decision that holds them.

Domain code (pure, no boto3) returns a :class:`Decision`: at most one finding and the
actions the policy calls for. The :class:`~stage_policy.executor.Executor` carries the
actions out (``enforce``) or describes them (``dry_run``), under the per-invocation caps,
and records each in the audit ledger. Like Cloud Custodian's actions, every action class
declares the IAM actions it needs in ``permissions``; the template test derives each
function's IAM statements from the classes the function uses.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Literal

if TYPE_CHECKING:
    from stage_policy.findings import Finding

#: service name -> boto3 client (cached per container by :mod:`stage_policy.runtime`)
Clients = Callable[[str], Any]
Mode = Literal["enforce", "dry_run"]
#: Which ``safety.max_<cap>_per_run`` budget an action spends.
Cap = Literal["revocations", "deletions"]


class Skipped(Exception):
    """Raised by :meth:`Action.apply` that finds, at the moment of acting, that it no longer applies (the bucket
    was retagged since it was planned): nothing was changed. The executor records it ``skipped`` with the
    message and gives back what the action would have spent of its cap."""


@dataclass(frozen=True)
class Action:
    """One step the executor carries out through boto3, or in dry run describes.

    Subclasses set ``kind`` and ``permissions`` and implement :meth:`describe` and
    :meth:`apply`. ``remediation = False`` marks bookkeeping that happens in every mode
    (writing a validation report, tagging what was checked); remediation happens only
    in ``enforce``. ``cap`` names the per-invocation budget the action spends.
    """

    kind: ClassVar[str] = "action"
    permissions: ClassVar[tuple[str, ...]] = ()
    remediation: ClassVar[bool] = True
    cap: ClassVar[Cap | None] = None

    target: str

    def describe(self) -> str:
        """What :meth:`apply` would do, as the object of "would ..." (one line)."""
        raise NotImplementedError

    def apply(self, clients: Clients) -> str:
        """Carry the action out; return what was done (one line). Raise on failure; :class:`Skipped` when it no
        longer applies and nothing was done."""
        raise NotImplementedError

    def weight(self) -> int:
        """How much of its cap this action spends (a batch delete of 40 versions spends 40)."""
        return 1

    def identity(self) -> tuple[Any, ...]:
        """Two actions with the same identity in one invocation are carried out once.

        Every field counts, not only ``target``: removing a snapshot share with account A
        is not the same action as removing one with account B.
        """
        return (type(self).__name__, *(_hashable(getattr(self, f.name)) for f in fields(self)))


def _hashable(value: Any) -> Any:
    """Field values as a hashable key (lifecycle rules and other documents are dicts and lists)."""
    if isinstance(value, dict):
        return tuple(sorted((str(k), _hashable(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple, set, frozenset)):
        items = tuple(_hashable(v) for v in value)
        return tuple(sorted(items, key=repr)) if isinstance(value, (set, frozenset)) else items
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value


@dataclass
class Decision:
    """What the domain decided for one incident: a finding (or none) and the actions to take."""

    finding: Finding | None
    actions: list[Action] = field(default_factory=list)
    stage: str | None = None
    #: ``alert`` when the policy asks for alerts only: the finding says so instead of "none".
    response: str = "contain"
    #: Why nothing is done although the policy would contain (a protected role, another account's role):
    #: becomes the finding's ``action`` when there are no actions.
    note: str = ""


Status = Literal["done", "dry_run", "skipped", "failed", "duplicate"]


@dataclass(frozen=True)
class Outcome:
    """What became of one action."""

    kind: str
    target: str
    status: Status
    detail: str

    def line(self) -> str:
        return self.detail
