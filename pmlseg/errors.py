"""Errors the user must act on, and the exit codes that tell bad input, a broken set-up and a crash apart.

The workflow records a visit as failed only when its stage exits with ``EXIT_BAD_INPUT`` (the visit's
data cannot be used); every other non-zero exit (``EXIT_SETUP``, ``EXIT_CRASH``, Python's own 1, a
signal) fails the job, so the run exits non-zero and a re-run retries it.  The codes follow sysexits.h
(65 EX_DATAERR, 78 EX_CONFIG, 70 EX_SOFTWARE) so none collides with Python (1) or argparse (2).
"""

EXIT_BAD_INPUT = 65
EXIT_SETUP = 78
EXIT_CRASH = 70


class PmlsegError(Exception):
    """A clear, one-line problem with the input (names the file and what is wrong); exit EXIT_BAD_INPUT."""

    exit_code = EXIT_BAD_INPUT


class SetupError(PmlsegError):
    """The configuration or installation cannot work (a missing model, no CUDA GPU, a missing tool):
    never a verdict on a visit, so the job fails and is retried once the set-up is fixed."""

    exit_code = EXIT_SETUP
