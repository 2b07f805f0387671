"""``python -m training.tiny``: train (or check) the tiny base model; see `training.tiny.job`."""

from training.tiny.job import main

main()
