"""The environment a command processor's program gets: a minimal one, never the daemon's.

The daemon's environment holds its secrets (a PostgreSQL URL with its password, WIZD_*
settings, cloud credentials), so a program gets only the variables a program commonly needs
to run (PATH, HOME, USER, LOGNAME, LANG, LC_*, TZ, TMPDIR), the ones its config names in
`inherit_env` (taken from the daemon's environment when set there), the ones its config sets
in `env`, and the job's WIZD_JOB_ID, WIZD_QUEUE, WIZD_JOB_NAME and WIZD_ATTEMPT.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from wizd.model import Job

BASE_NAMES = frozenset({"PATH", "HOME", "USER", "LOGNAME", "LANG", "TZ", "TMPDIR"})


def base_environment(
    environ: Mapping[str, str], inherit: Iterable[str], env: Mapping[str, str]
) -> dict[str, str]:
    """The variables every run of a processor gets: the basics and `inherit` from `environ`
    (names it lacks are left out), then `env` (which wins)."""
    wanted = set(inherit)
    base = {
        name: value
        for name, value in environ.items()
        if name in BASE_NAMES or name.startswith("LC_") or name in wanted
    }
    base.update(env)
    return base


def job_environment(base: Mapping[str, str], job: Job) -> dict[str, str]:
    """`base` plus the job's WIZD_JOB_* variables (which nothing in the config overrides)."""
    return {
        **base,
        "WIZD_JOB_ID": str(job.id),
        "WIZD_QUEUE": job.queue,
        "WIZD_JOB_NAME": job.name,
        "WIZD_ATTEMPT": str(job.attempt),
    }
