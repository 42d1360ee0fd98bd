"""The default suite's property tests are reproducible; the dedicated runs explore (README: Tests)."""

from __future__ import annotations

import os
import subprocess
import sys

from hypothesis import settings

from tests.conftest import EXPLORE
from tests.hardening.fuzz_strategies import FUZZ
from tests.helpers import ROOT


def test_the_default_suite_draws_the_same_examples_and_make_fuzz_explores() -> None:
    assert settings.default.derandomize is (not EXPLORE) and FUZZ.derandomize is (not EXPLORE)
    probe = ("import tests.conftest, tests.hardening.fuzz_strategies as f; from hypothesis import settings; "
             "print(settings.default.derandomize, f.FUZZ.derandomize)")
    env = {k: v for k, v in os.environ.items() if k != "STAGEWARDEN_EXPLORE"}
    quiet = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    explore = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env={**env, "STAGEWARDEN_EXPLORE": "1"},
                             capture_output=True, text=True, check=True)
    assert (quiet.stdout.split(), explore.stdout.split()) == (["True", "True"], ["False", "False"])


def test_make_fuzz_and_make_property_explore() -> None:
    targets = {}
    for block in (ROOT / "Makefile").read_text().split("\n\n"):
        for line in block.splitlines():
            if line.split(":")[0] in ("fuzz", "property") and "##" in line:
                targets[line.split(":")[0]] = block
    assert set(targets) == {"fuzz", "property"} and all("STAGEWARDEN_EXPLORE=1" in b for b in targets.values())
