"""MLCube entry point of the classical FeTS baseline: ``mlcube.py infer --data_path=DIR --output_path=DIR``.

Paths come only from the arguments and from ``__file__`` (singularity ignores WORKDIR and runs in the
caller's cwd), and nothing is written outside ``output_path`` (sites give read-only or tiny tmpfs roots).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ beside the code: the image may be read-only
sys.path.insert(0, str(Path(__file__).resolve().parent))

from segment import LABEL_CONVENTIONS, find_cases, segment_case  # noqa: E402  (needs the path above)


def read_labels(parameters_file: str | None) -> str:
    """The label convention from the cube's parameters file (``labels: fets | brats2025``); no file: fets.

    The FeTS cube declares no parameters file, so it always writes FeTS labels; the BraTS 2025 reference
    cubes declare one in their workspace (the same code, another convention).
    """
    if not parameters_file or not Path(parameters_file).is_file():
        return "fets"
    import yaml

    doc = yaml.safe_load(Path(parameters_file).read_text(encoding="utf-8")) or {}
    labels = str(doc.get("labels", "fets")) if isinstance(doc, dict) else "fets"
    if labels not in LABEL_CONVENTIONS:
        raise SystemExit(f"{parameters_file}: labels must be one of {', '.join(LABEL_CONVENTIONS)}, got {labels!r}")
    return labels


def infer(data_path: Path, output_path: Path, labels: str = "fets") -> int:
    """Segment every case under ``data_path`` into ``output_path/<case>.nii.gz``; 1 if any case failed."""
    cases = find_cases(data_path)
    if not cases:
        print(f"no cases found under {data_path}", file=sys.stderr)
        return 1
    output_path.mkdir(parents=True, exist_ok=True)
    failed = 0
    for case, files in cases.items():
        start = time.monotonic()
        try:
            segment_case(files, output_path / f"{case}.nii.gz", labels)
        except Exception as exc:  # one bad case must not cost the others their predictions
            failed += 1
            print(f"{case}: FAILED: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            continue
        print(f"{case}: done in {time.monotonic() - start:.2f} s", flush=True)
    print(f"segmented {len(cases) - failed}/{len(cases)} cases", flush=True)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mlcube.py", description=__doc__)
    sub = parser.add_subparsers(dest="task", required=True)
    p_infer = sub.add_parser("infer", help="segment all cases")
    p_infer.add_argument("--data_path", required=True, type=Path)
    p_infer.add_argument("--output_path", required=True, type=Path)
    # The federation never passes these (the model carries its own); --parameters_file, when the cube declares
    # one, names its label convention; the rest (and anything else a runner may add) is ignored rather than
    # failing the whole site.
    p_infer.add_argument("--parameters_file", default=None)
    p_infer.add_argument("--checkpoint_path", default=None)
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        print(f"ignoring unknown arguments: {unknown}", file=sys.stderr)
    if args.task == "infer":
        return infer(args.data_path.resolve(), args.output_path.resolve(), read_labels(args.parameters_file))
    parser.error(f"unknown task {args.task}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
