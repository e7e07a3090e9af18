"""Subcommands of the `pmlseg` CLI, one module each (discovered by pmlseg.cli)."""
