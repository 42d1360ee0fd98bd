"""The test helpers' own contracts: the corpus is skipped when absent, except in CI."""

from __future__ import annotations

import pytest

from tests import helpers


@pytest.mark.parametrize("ci", [None, "", "false"])
def test_a_missing_corpus_skips_outside_ci_naming_where_it_looked(monkeypatch, tmp_path, ci) -> None:
    monkeypatch.setattr(helpers, "CORPUS", tmp_path / "absent")
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)

    with pytest.raises(pytest.skip.Exception, match=f"CloudTrail corpus not found at {tmp_path / 'absent'}"):
        helpers.require_corpus()


@pytest.mark.parametrize("ci", ["true", "1"])
def test_a_missing_corpus_fails_in_ci(monkeypatch, tmp_path, ci) -> None:
    monkeypatch.setattr(helpers, "CORPUS", tmp_path / "absent")
    monkeypatch.setenv("CI", ci)

    with pytest.raises(pytest.fail.Exception, match="a missing corpus fails in CI"):
        helpers.require_corpus()


def test_a_present_corpus_is_returned(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(helpers, "CORPUS", tmp_path)
    monkeypatch.setenv("CI", "true")

    assert helpers.require_corpus() == tmp_path
