"""Logging set-up shared by every subcommand (levels, optional per-rule log file)."""

from __future__ import annotations

import logging
import sys


def setup_logging(level: str = "INFO", log_file: str | None = None) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        handlers.append(logging.FileHandler(log_file))
    logging.basicConfig(level=getattr(logging, level), handlers=handlers, force=True,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("highdicom", "matplotlib", "PIL"):  # libraries that log every step at INFO
        logging.getLogger(noisy).setLevel(max(logging.WARNING, getattr(logging, level)))


def progress(iterable=None, **kwargs):
    """A tqdm progress bar on stderr that stays quiet when stderr is not a terminal-like stream."""
    from tqdm.auto import tqdm

    kwargs.setdefault("file", sys.stderr)
    kwargs.setdefault("mininterval", 1.0)
    kwargs.setdefault("disable", None)  # None: disable when not a TTY
    return tqdm(iterable, **kwargs)
