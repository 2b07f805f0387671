"""Jobs: fine-tunes and sweeps as folders on disk, a persistent scheduler, training progress copied into DuckDB.

A job runs ``python app.py train`` on a job file in a child process; this package knows how to
keep, schedule, run, cancel and follow one, not what the job trains (that is `training/`, which
also checks a job request before it gets here). ``disk`` is a job's folder and the functions the
scheduler runs; ``scheduler`` is `TrainingJobs` (APScheduler with a SQLite job store, one job at
a time); ``follower`` copies each job's state and metrics into the store; ``sweeps`` runs evaluation
sweeps as jobs inside the app, on the same scheduler.

The scheduler's SQLite store keeps the functions it calls as the strings "backend.jobs:run_job"
and "backend.jobs:run_schedule" (sweeps: "backend.jobs:run_sweep_job", "...:run_sweep_schedule"); they are imported here so that those strings keep working.
"""

from backend.jobs.disk import run_job, run_schedule
from backend.jobs.sweeps import run_sweep_job, run_sweep_schedule

__all__ = ["run_job", "run_schedule", "run_sweep_job", "run_sweep_schedule"]
