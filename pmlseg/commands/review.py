"""`pmlseg review import DECISIONS.json DIR`: fold report decisions back into DIR/lesions.tsv."""

NAME = "review"
HELP = "import a reviewer's decisions (exported from report.html) into DIR/lesions.tsv"
DESCRIPTION = """Reads DECISIONS.json (downloaded with the report's 'Export decisions' button),
validates it, and writes review_decision / review_comment columns into DIR/lesions.tsv and a copy
to DIR/decisions.json.  Decisions: confirm_new_lesion, not_a_lesion, suspect_pml."""


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = sub.add_parser("import", help="fold DECISIONS.json into DIR/lesions.tsv")
    p.add_argument("decisions", help="decisions.json exported from report.html")
    p.add_argument("dir", help="the detect output folder holding lesions.tsv")


def run(args) -> int:
    from pmlseg.report.review import import_decisions

    n = import_decisions(args.decisions, args.dir)
    print(f"{n} decisions imported into {args.dir}/lesions.tsv")
    return 0
