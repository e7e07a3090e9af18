"""`pmlseg chain TO_PREV TO_CUR OUT`: previous->current visit transform from two rebaseline registrations."""

from __future__ import annotations

NAME = "chain"
HELP = "(workflow internal) chain two rebaseline registrations into a previous->current visit transform"
DESCRIPTION = """\
TO_PREV and TO_CUR are transforms written by `pmlseg register REBASELINE VISIT` (rebaseline points ->
visit points). Writes OUT, an ITK affine mapping points of the previous visit to points of the
current visit (TO_CUR o TO_PREV^-1), so detection against the previous visit needs no new
registration and stays consistent with the rebaseline.
"""


def add_arguments(parser) -> None:
    parser.add_argument("to_previous", metavar="TO_PREV", help="rebaseline -> previous visit transform")
    parser.add_argument("to_current", metavar="TO_CUR", help="rebaseline -> current visit transform")
    parser.add_argument("out", metavar="OUT", help="output transform (.tfm)")


def run(args) -> int:
    from pmlseg.workflow.transforms import chain

    chain(args.to_previous, args.to_current, args.out)
    return 0
