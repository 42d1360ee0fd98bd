# Stagewarden developer commands. Each target creates the virtual environment it needs.
#   make demo    - every guardrail end to end on the local AWS emulator (moto_server)
#   make test    - the whole test suite (unit, template incl. sam validate/build, e2e)
#   make bench   - the performance figures (bench/)
#   make security - checkov over template.yaml and its SAM translation (pinned, its own venv)
#   make help    - every target, one line each
#   make property - the retention sweep planner's safety property over 10,000 generated bucket states
#   make fuzz    - malformed events against every function, 10,000 Hypothesis examples per property
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
SAM_VENV := .venv-sam
CHECKOV_VENV := .venv-checkov
export AWS_DEFAULT_REGION ?= us-east-1
export SAM_CLI_TELEMETRY := 0
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: demo test bench property fuzz build validate security clean help

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $@

$(SAM_VENV)/.installed:
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet aws-sam-cli==1.170.0
	touch $@

# checkov pinned as aws-sam-cli is (its own requirements pin or bound its dependencies); the tests run it offline
$(CHECKOV_VENV)/.installed:
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet checkov==3.3.30
	touch $@

demo: $(VENV)/.installed ## every guardrail end to end on the local AWS emulator (moto_server)
	$(VENV)/bin/stagewarden demo

test: $(VENV)/.installed $(SAM_VENV)/.installed $(CHECKOV_VENV)/.installed ## the whole test suite (unit, template incl. sam validate/build and checkov, e2e)
	STAGEWARDEN_REQUIRE_SAM=1 STAGEWARDEN_SAM=$(SAM_VENV)/bin/sam \
	STAGEWARDEN_REQUIRE_CHECKOV=1 STAGEWARDEN_CHECKOV=$(CHECKOV_VENV)/bin/checkov $(VENV)/bin/pytest

bench: $(VENV)/.installed ## the performance figures (bench/)
	$(VENV)/bin/python bench/import_and_load.py
	$(VENV)/bin/python -W ignore bench/exfil.py
	$(VENV)/bin/python -W ignore bench/retention.py
	$(VENV)/bin/python -W ignore bench/posture.py
	$(VENV)/bin/python -W ignore bench/alerts.py
	$(VENV)/bin/python -W ignore bench/scale.py
	$(VENV)/bin/pip install --quiet -e '.[test,bench]'
	$(VENV)/bin/python bench/schema_gate.py

property: $(VENV)/.installed ## the retention sweep planner's safety property over 10,000 generated bucket states
	STAGEWARDEN_EXPLORE=1 STAGEWARDEN_SWEEP_EXAMPLES=10000 $(VENV)/bin/pytest tests/unit/retention/test_property.py -p no:cacheprovider --hypothesis-show-statistics

security: $(VENV)/.installed $(CHECKOV_VENV)/.installed ## checkov over template.yaml and its SAM translation; skips only in place, with reasons
	STAGEWARDEN_REQUIRE_CHECKOV=1 STAGEWARDEN_CHECKOV=$(CHECKOV_VENV)/bin/checkov $(VENV)/bin/pytest tests/template/test_security_scan.py -p no:cacheprovider -q

# FUZZ_EXAMPLES=n for another count; FUZZ_ONLY=TestPolicyGuard (a pytest -k expression) for some functions only
fuzz: $(VENV)/.installed ## malformed events against every function: 10,000 Hypothesis examples per property (README: Tests)
	ulimit -v 8000000; STAGEWARDEN_EXPLORE=1 STAGEWARDEN_FUZZ_EXAMPLES=$(or $(FUZZ_EXAMPLES),10000) $(VENV)/bin/pytest tests/hardening/test_fuzz.py -p no:cacheprovider \
		--hypothesis-show-statistics $(if $(FUZZ_ONLY),-k "$(FUZZ_ONLY)")

validate: $(SAM_VENV)/.installed ## sam validate --lint on template.yaml
	$(SAM_VENV)/bin/sam validate --lint

# sam build needs the functions' runtime (python3.12) on PATH; pyenv keeps it out of PATH unless selected
PY312_DIR := $(shell dirname $$(ls -d $$HOME/.pyenv/versions/3.12*/bin/python3.12 2>/dev/null | tail -1) 2>/dev/null)
build: $(SAM_VENV)/.installed ## sam build (needs python3.12 for the functions' runtime)
	PATH="$(PY312_DIR):$$PATH" $(SAM_VENV)/bin/sam build

clean: ## remove the virtual environments, .aws-sam and the emulator's state
	rm -rf $(VENV) $(SAM_VENV) $(CHECKOV_VENV) .aws-sam .stagewarden .pytest_cache

help: ## list the targets, one line each
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  make %-9s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
