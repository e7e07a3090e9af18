"""The CLI explains itself: every subcommand is listed and has a --help with a description."""

import subprocess
import sys

from pmlseg.cli import build_parser


def _subcommands():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sub.choices


def test_every_subcommand_has_help_text():
    cmds = _subcommands()
    assert {"ingest", "synth"} <= set(cmds), sorted(cmds)
    for name, p in cmds.items():
        assert p.description and len(p.description) > 40, f"{name}: --help needs a real description"


def test_help_runs_as_a_process_and_lists_commands():
    out = subprocess.run([sys.executable, "-m", "pmlseg", "--help"], capture_output=True, text=True, check=True).stdout
    for name in _subcommands():
        assert name in out
    for name in _subcommands():
        r = subprocess.run([sys.executable, "-m", "pmlseg", name, "--help"], capture_output=True, text=True)
        assert r.returncode == 0 and "usage: pmlseg" in r.stdout, (name, r.stderr)


def test_no_command_prints_usage_and_fails():
    r = subprocess.run([sys.executable, "-m", "pmlseg"], capture_output=True, text=True)
    assert r.returncode == 2 and "COMMAND" in r.stdout
