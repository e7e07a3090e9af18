"""The `pmlseg` command line: one subcommand per module in pmlseg.commands.

Each module in ``pmlseg/commands`` defines ``NAME``, ``HELP``, ``add_arguments(parser)``
and ``run(args) -> int``; keeping heavy imports inside ``run`` keeps ``--help`` fast.

Exit codes (pmlseg.errors): 0 done, 65 bad input (one line naming the file), 78 a set-up that cannot
work, 70 an unexpected exception (traceback in the log), 130 interrupted.  For tests only,
``PMLSEG_TEST_CRASH=COMMAND`` makes that subcommand raise an unexpected exception before it starts.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import sys

from pmlseg import __version__
from pmlseg.allocator import keep_freed_memory
from pmlseg.errors import EXIT_CRASH, PmlsegError
from pmlseg.logs import setup_logging

log = logging.getLogger("pmlseg")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pmlseg",
        description=(
            "MRI surveillance for people with MS on natalizumab: convert DICOM to BIDS, "
            "register follow-ups to the rebaseline, detect new and enlarging lesions and "
            "flag those that look like PML. Run `pmlseg COMMAND --help` for details."
        ),
    )
    parser.add_argument("--version", action="version", version=f"pmlseg {__version__}")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="verbosity of the log on stderr (default INFO)")
    parser.add_argument("--log-file", default=None, help="also append the log to this file")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    import pmlseg.commands as commands

    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"pmlseg.commands.{info.name}")
        if not hasattr(module, "NAME"):
            continue
        p = sub.add_parser(module.NAME, help=module.HELP, description=getattr(module, "DESCRIPTION", module.HELP),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        p.set_defaults(func=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    setup_logging(args.log_level, args.log_file)
    keep_freed_memory()
    try:
        if os.environ.get("PMLSEG_TEST_CRASH") == args.command:
            raise RuntimeError(f"injected crash in `pmlseg {args.command}` (PMLSEG_TEST_CRASH)")
        return int(args.func(args) or 0)
    except PmlsegError as exc:
        log.error("%s", exc)
        return exc.exit_code
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130
    except Exception:  # a bug or a broken environment, not bad input: keep the traceback
        log.exception("pmlseg %s crashed", args.command)
        return EXIT_CRASH


if __name__ == "__main__":
    sys.exit(main())
