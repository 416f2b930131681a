"""``mlops-course``: run lessons, list the module table, check the machine."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mlops_course import paths
from mlops_course.course import lessons as catalogue
from mlops_course.course import runner


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlops-course", description="Run and inspect the MLOps course.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute lessons with papermill and print a summary table")
    run.add_argument("lessons", nargs="*", help="lesson numbers or file names (default: every lesson)")
    run.add_argument("--out", type=Path, default=None, help="folder for executed notebooks (build/executed)")
    run.add_argument("-p", "--parameter", action="append", default=[], metavar="NAME=VALUE",
                     help="override a parameter of the lessons' parameters cell")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    refresh = sub.add_parser("execute", help="re-execute lessons in place to refresh their stored outputs")
    refresh.add_argument("lessons", nargs="*", help="lesson numbers or file names (default: every lesson)")
    edition = sub.add_parser("edition", help="write the learner or instructor edition of every lesson")
    edition.add_argument("edition", metavar="learner|instructor",
                         help="learner: solutions removed; instructor: solutions and instructor notes")
    edition.add_argument("--out", type=Path, default=None, help="output folder (default: build/<edition>)")
    render = sub.add_parser("render", help="render the lessons as a static offline HTML site")
    render.add_argument("--edition", default="learner", metavar="learner|instructor",
                        help="which edition the site shows (default: learner)")
    render.add_argument("--out", type=Path, default=None, help="output folder (default: build/site)")
    sub.add_parser("list", help="print the module table")
    sub.add_parser("doctor", help="check this machine for what the course needs")
    lab_cmd = sub.add_parser("lab", help="JupyterLab on the lessons: 127.0.0.1, a token, no news or update checks")
    lab_cmd.add_argument("--port", type=int, default=None, help="port to try first (default 8888)")
    return parser


def _fail(message: str) -> int:
    print(f"mlops-course: {message}", file=sys.stderr)
    return 2


def cmd_run(args: argparse.Namespace) -> int:
    try:
        chosen = [catalogue.find(name) for name in args.lessons] if args.lessons else list(catalogue.CATALOGUE)
        params = runner.parse_parameters(args.parameter)
    except (catalogue.UnknownLessonError, runner.ParameterError) as exc:
        return _fail(str(exc))
    if not chosen:
        return _fail("no lessons found in notebooks/")
    known = set().union(*(runner.lesson_parameters(info.path) for info in chosen))
    unknown = sorted(set(params) - known)
    if unknown:
        return _fail(f"no lesson among {[i.number for i in chosen]} has parameter(s) {unknown}; "
                     f"known: {sorted(known)}")
    results = runner.run(chosen, args.out, params, progress=not args.no_progress)
    print(runner.summary_table(results))
    return 0 if all(r.status == "ok" for r in results) else 1


def cmd_execute(args: argparse.Namespace) -> int:
    try:
        chosen = [catalogue.find(name) for name in args.lessons] if args.lessons else list(catalogue.CATALOGUE)
    except catalogue.UnknownLessonError as exc:
        return _fail(str(exc))
    results = [runner.refresh(info) for info in chosen]
    print(runner.summary_table(results))
    return 0 if all(r.status == "ok" for r in results) else 1


def cmd_edition(args: argparse.Namespace) -> int:
    from mlops_course.course import editions

    try:
        editions.check_edition(args.edition)
        report = editions.write_edition(args.edition, args.out or paths.build_dir() / args.edition)
    except editions.EditionError as exc:
        return _fail(str(exc))
    print(report)
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    from mlops_course.course import editions, site

    try:
        editions.check_edition(args.edition)
        report = site.render_site(args.out or paths.build_dir() / "site", args.edition)
    except (editions.EditionError, site.SiteError) as exc:
        return _fail(str(exc))
    print(report)
    return 0


def cmd_list(_: argparse.Namespace) -> int:
    print(catalogue.module_table())
    return 0


def cmd_doctor(_: argparse.Namespace) -> int:
    from mlops_course.course import doctor

    results = doctor.run_checks()
    for result in results:
        print(result)
    bad = [r for r in results if not r.ok]
    print(f"\n{len(results) - len(bad)} of {len(results)} checks passed.")
    return 1 if bad else 0


def cmd_lab(args: argparse.Namespace) -> int:
    import os

    from mlops_course.course import lab

    command = lab.lab_command(port=args.port or lab.DEFAULT_PORT)
    os.execv(command[0], command)  # JupyterLab replaces this process; Ctrl+C stops it as usual
    return 0  # pragma: no cover


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return {"run": cmd_run, "execute": cmd_execute, "list": cmd_list, "doctor": cmd_doctor,
            "edition": cmd_edition, "render": cmd_render, "lab": cmd_lab}[args.command](args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
