"""Entry point of the FeTS 2022 data-prep cube: ``mlcube.py TASK --param=value ...`` (MLCube's scheme).

Thin on purpose: the logic lives in ``fedsim.dataprep`` so that the same code is unit-tested on the host.
Exit codes: 0 ok, 1 sanity problems found, 2 bad parameters or data layout (a ``FedsimError``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fedsim.dataprep import DataPrepParams, prepare, sanity_check, statistics
from fedsim.errors import FedsimError
from fedsim.store.atomic import write_yaml_atomic


def _prepare(args: argparse.Namespace) -> int:
    params = DataPrepParams.from_yaml(args.parameters_file)
    report = prepare(args.data_path, args.output_path, args.output_labels_path, args.metadata_path, params)
    for case, problems in report.invalid.items():
        print(f"skipped invalid case {case}: {'; '.join(problems)}", file=sys.stderr)
    for case, why in report.split_skipped.items():
        print(f"split file case {case} not used: {why}", file=sys.stderr)
    print(f"prepare: selected {report.num_selected} of {report.num_valid} valid cases ({report.num_invalid} invalid)")
    return 0


def _sanity_check(args: argparse.Namespace) -> int:
    params = DataPrepParams.from_yaml(args.parameters_file)
    problems = sanity_check(args.data_path, args.labels_path, params)
    if problems:
        for problem in problems:
            print(problem, file=sys.stderr)
        print(f"sanity_check: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print("sanity_check: OK")
    return 0


def _statistics(args: argparse.Namespace) -> int:
    params = DataPrepParams.from_yaml(args.parameters_file)
    stats = statistics(args.data_path, args.labels_path, params)
    write_yaml_atomic(Path(args.output_path), stats)
    print(
        f"statistics: {stats['num_valid_subjects']} valid, {stats['num_invalid_subjects']} invalid subjects "
        f"-> {args.output_path}"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlcube.py", description="FeTS 2022 data-prep cube")
    tasks = parser.add_subparsers(dest="task", required=True)

    p = tasks.add_parser("prepare", help="select, rename and anonymise cases")
    p.add_argument("--data_path", required=True)
    p.add_argument("--parameters_file", required=True)
    p.add_argument("--output_path", required=True)
    p.add_argument("--output_labels_path", required=True)
    p.add_argument("--metadata_path", required=True)
    p.set_defaults(run=_prepare)

    s = tasks.add_parser("sanity_check", help="check prepared data; exit 1 listing every problem")
    s.add_argument("--data_path", required=True)
    s.add_argument("--labels_path", required=True)
    s.add_argument("--parameters_file", required=True)
    s.set_defaults(run=_sanity_check)

    t = tasks.add_parser("statistics", help="write counts of valid and invalid subjects")
    t.add_argument("--data_path", required=True)
    t.add_argument("--labels_path", required=True)
    t.add_argument("--parameters_file", required=True)
    t.add_argument("--output_path", required=True)
    t.set_defaults(run=_statistics)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except FedsimError as exc:
        print(f"{args.task}: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
