"""`sr3 study`: prepare SR3's 2AFC fool-rate study as one SQLite file, and report its answers."""

from __future__ import annotations

import argparse

from sr3.errors import SR3Error

EXAMPLES = """examples:
  sr3 study create --real faces/hr --fake faces-8x=faces/sr3 --fake regression=faces/reg --with-lr faces/lr -o study.sqlite
  sr3 serve --study study.sqlite                # participants answer in the browser
  sr3 study report study.sqlite --csv fool-rates.csv
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("study", help="prepare and report a 2AFC fool-rate study (SR3's human evaluation)",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="write a study file of trials from folders of images")
    create.add_argument("--real", required=True, help="folder of real (camera) HR images")
    create.add_argument("--fake", action="append", required=True, metavar="NAME=DIR",
                        help="a model's outputs, same file names as --real (repeat for several models)")
    create.add_argument("--with-lr", metavar="LR_DIR",
                        help="LR inputs (same names): adds task 1, the pair with the LR image between")
    create.add_argument("-o", "--output", required=True, help="the study file to write (.sqlite)")
    create.add_argument("--limit", type=int, help="only the first N images of --real")
    create.add_argument("--seed", type=int, default=0, help="seed of the left/right draws")
    report = actions.add_parser("report", help="fool rate per model and task with 95%% intervals")
    report.add_argument("study", help="the study file")
    report.add_argument("--csv", help="also write the table as CSV")


def parse_fakes(specs: list[str]) -> dict[str, str]:
    """NAME=DIR pairs, names unique."""
    fakes: dict[str, str] = {}
    for spec in specs:
        name, sep, folder = spec.partition("=")
        if not sep or not name or not folder:
            raise SR3Error(f"--fake must be NAME=DIR; got {spec}")
        if name in fakes:
            raise SR3Error(f"--fake {name} given twice")
        fakes[name] = folder
    return fakes


def run(args: argparse.Namespace) -> None:
    from contextlib import closing

    from sr3 import study

    if args.action == "create":
        if args.limit is not None and args.limit < 1:
            raise SR3Error("--limit must be at least 1")
        count = study.create_study(args.output, args.real, parse_fakes(args.fake), args.with_lr, args.seed, args.limit)
        print(f"wrote {args.output}: {count} trials")
        return
    with closing(study.connect(args.study)) as db:
        rates = study.fool_rates(db)
    print("| model | task | answers | fool rate [95% interval] |")
    print("|---|---|---|---|")
    for r in rates:
        low, high = r.interval
        figure = f"{r.rate:.1%} [{low:.1%}, {high:.1%}]" if r.answers else "no answers"
        print(f"| {r.model} | {r.task} | {r.answers} | {figure} |")
    if args.csv:
        study.write_report_csv(rates, args.csv)
        print(f"wrote {args.csv}")
