# The two commands of the README.
.PHONY: demo test test-fast setup

demo:  ## set up (idempotent) and start the dashboard on 127.0.0.1:7860 with the embedded model
	bash scripts/setup.sh
	.venv/bin/python app.py serve

test:  ## set up (idempotent) and run the whole test suite
	bash scripts/setup.sh --test
	.venv/bin/python -m pytest

test-fast:  ## the tests that start no engine, train nothing and open no browser (under 3 minutes)
	bash scripts/setup.sh --test
	.venv/bin/python -m pytest -m "not engine and not train and not browser"

setup:
	bash scripts/setup.sh
