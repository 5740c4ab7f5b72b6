# The two set-up commands of the README:
#   make sample   install, build the sample issue, dry-send it to subscribers/sample.csv (outbox)
#   make test     install everything the tests need, then run the whole test suite
# Both install the exact versions in requirements.lock / requirements-dev.lock;
#   make lock     refreshes those files (make lock PACKAGES="ruff mypy" moves only these)
.PHONY: sample test lint bench golden lock

sample:
	@scripts/setup
	.venv/bin/newsletter build issues/2019-09.yaml
	.venv/bin/newsletter send issues/2019-09.yaml --list sample --backend outbox --dry-run --yes

test:
	@scripts/setup-test
	.venv/bin/ruff check src tests benchmarks
	.venv/bin/ruff format --check src tests benchmarks
	.venv/bin/mypy
	.venv/bin/pytest -q

lint:
	.venv/bin/ruff check src tests benchmarks
	.venv/bin/ruff format --check src tests benchmarks
	.venv/bin/mypy

bench:
	.venv/bin/python benchmarks/bench_build.py
	.venv/bin/python benchmarks/bench_send.py
	.venv/bin/python benchmarks/bench_events.py
	.venv/bin/python benchmarks/bench_serve_hostile.py
	.venv/bin/python benchmarks/bench_kill_matrix.py
	.venv/bin/python benchmarks/bench_studio.py
	.venv/bin/python benchmarks/bench_links.py
	.venv/bin/python benchmarks/bench_signup.py
	.venv/bin/python benchmarks/bench_languages.py

golden:
	NEWSLETTER_REFRESH_GOLDEN=1 .venv/bin/pytest -q tests/test_golden.py

lock:
	scripts/lock $(PACKAGES)
