"""Command-line mistakes: one line on stderr naming the file, option or setting, and exit 2.

:class:`UsageError` is what the command line raises for a mistake it recognises; the
helpers here read the files a user names and turn every way they can be wrong (missing,
a folder, binary, not UTF-8, empty, not JSON) into one. :func:`describe` maps the other
known exception types (botocore's credential, region and connection errors, ``OSError``
with a file name, ...) to the same one line. Anything it does not know is a bug and keeps
its traceback.

Import-light on purpose: the command line imports this at startup.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Iterable

#: separates what is wrong from what to do
HINT = " \u2014 "


class UsageError(Exception):
    """A user mistake the command line explains in one line (exit 2). The message omits the ``stagewarden:`` prefix."""


def did_you_mean(word: object, choices: Iterable[str]) -> str:
    """`` (did you mean 'stages'?)`` for the closest choice, or ``""``."""
    import difflib

    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.7)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _os_problem(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "no such file or folder"
    if isinstance(exc, IsADirectoryError):
        return "is a folder, not a file"
    if isinstance(exc, NotADirectoryError):
        return "a part of the path is a file, not a folder"
    if isinstance(exc, PermissionError):
        return "permission denied"
    return (exc.strerror or str(exc)).lower()


def os_problem(exc: OSError) -> str:
    return _os_problem(exc)


def _named(path: str | Path, option: str | None) -> str:
    return f"{option} {path}" if option else str(path)


def cannot_read(path: str | Path, exc: OSError, what: str, option: str | None = None) -> UsageError:
    return UsageError(f"{_named(path, option)}: cannot read {what} ({_os_problem(exc)}){HINT}check the path")


def read_bytes(path: str | Path, what: str, option: str | None = None) -> bytes:
    """The file's bytes; a :class:`UsageError` naming it (and ``what`` it should be) if it cannot be read."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise cannot_read(path, exc, what, option) from None


def decode(data: bytes, name: str, what: str) -> str:
    """UTF-8 text (a leading byte-order mark is dropped); binary or other encodings raise :class:`UsageError`."""
    if b"\x00" in data[:8192]:
        raise UsageError(f"{name}: binary file, not {what}{HINT}check that you passed the right file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{name}: {not_utf8(data, exc)}{HINT}save it as UTF-8") from None


def not_utf8(data: bytes, exc: UnicodeDecodeError) -> str:
    line = data.count(b"\n", 0, exc.start) + 1
    return f"not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line})"


def read_text(path: str | Path, what: str, option: str | None = None) -> str:
    return decode(read_bytes(path, what, option), _named(path, option), what)


def read_json(path: str | Path, what: str, option: str | None = None, stdin: bool = False) -> Any:
    """A JSON document from a file (or ``-`` for standard input when ``stdin``); ``option`` names the flag that gave it."""
    import json

    if stdin and str(path) == "-":
        name, text = _named("-", option), decode(sys.stdin.buffer.read(), _named("- (stdin)", option), what)
    else:
        name, text = _named(path, option), read_text(path, what, option)
    if not text.strip():
        raise UsageError(f"{name}: the file is empty{HINT}it must hold {what} (JSON)")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{name}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}){HINT}"
                         f"it must hold {what} as JSON") from None


def check_output(path: str | Path, option: str) -> None:
    """Fail before any work if ``path`` cannot be written: its folder is missing, or it is a folder."""
    target = Path(path)
    if target.is_dir():
        raise UsageError(f"{option} {path}: is a folder{HINT}give a file name, e.g. {target / 'profile.json'}")
    parent = target.parent
    if not parent.is_dir():
        raise UsageError(f"{option} {path}: the folder {parent} does not exist{HINT}create it first (mkdir -p {parent})")


def parse_overrides(pairs: Iterable[str], option: str = "--parameter-overrides") -> dict[str, str]:
    """``KEY=VALUE`` pairs as ``sam deploy`` takes them."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"{option}: {pair!r} is not KEY=VALUE{HINT}write it as {key or 'Name'}=VALUE")
        out[key] = value
    return out


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number (got {text!r})") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (got {value})")
    return value


# ------------------------------------------------------------------ known exception types -> one line
_NO_CREDENTIALS = ("AWS credentials: none found" + HINT + "set AWS_PROFILE (after `aws configure` or `aws sso login`) "
                   "or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; for the local emulator run `stagewarden local up`")
_NO_REGION = ("AWS region: not set" + HINT + "export AWS_DEFAULT_REGION=<region> (or set region in your AWS profile); "
              "for the local emulator run `stagewarden local up`")


def describe(exc: BaseException) -> list[str] | None:
    """The stderr lines (without the ``stagewarden:`` prefix unless a policy error) for a known mistake, else None.

    A wrapper raised ``from`` a known mistake (Powertools Idempotency's persistence error over
    botocore's NoCredentialsError, ...) is described by its cause.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        lines = _describe_one(exc)
        if lines is not None:
            return lines
        exc = exc.__cause__
    return None


def _describe_one(exc: BaseException) -> list[str] | None:
    loader = sys.modules.get("stage_policy.loader")
    if loader is not None and isinstance(exc, loader.PolicyError):
        return exc.lines()  # `file: field: problem`, one line per problem, as documented
    if isinstance(exc, UsageError):
        return [f"stagewarden: {exc}"]
    botocore = sys.modules.get("botocore.exceptions")
    if botocore is not None:
        message = _botocore(exc, botocore)
        if message:
            return [f"stagewarden: {message}"]
    if isinstance(exc, UnicodeDecodeError):
        return [f"stagewarden: input is not UTF-8 text ({exc.reason} at byte {exc.start}){HINT}save the file as UTF-8"]
    if isinstance(exc, OSError) and exc.filename:
        return [f"stagewarden: {exc.filename}: {_os_problem(exc)}{HINT}check the path"]
    return None


def _botocore(exc: BaseException, b: Any) -> str | None:
    if isinstance(exc, (b.NoCredentialsError, b.PartialCredentialsError)):
        return _NO_CREDENTIALS
    if isinstance(exc, b.NoRegionError):
        return _NO_REGION
    if isinstance(exc, b.ProfileNotFound):
        return f"AWS_PROFILE: {exc}{HINT}use a profile from ~/.aws/config (aws configure list-profiles) or unset AWS_PROFILE"
    if isinstance(exc, b.EndpointConnectionError):
        url = getattr(exc, "kwargs", {}).get("endpoint_url", "the AWS endpoint")
        return (f"{url}: cannot connect{HINT}check your network, or if AWS_ENDPOINT_URL points at the local emulator, "
                "that it runs (`stagewarden local status`)")
    if isinstance(exc, b.ClientError):
        error = exc.response.get("Error", {})
        return (f"AWS {exc.operation_name}: {error.get('Code', '?')} ({error.get('Message', '')}){HINT}"
                "check the resource name and that your credentials may use it")
    return None
