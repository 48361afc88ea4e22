"""``python -m container.export_builtin MODEL OUT.tar.gz``: an FM model (a model directory, a model.tar.gz, or
the built-in's own) written as the built-in SageMaker FM's ``model.tar.gz`` (``model_algo-1``: symbol.json,
params, meta.json), which MXNet scripts written for the built-in load (``algorithm.builtin_fm``)."""

from __future__ import annotations

import argparse
import sys

from algorithm import artifact


def main(argv: list[str] | None = None) -> int:
    """Export and print the written path; exit code 1 with the reason on stderr when the model cannot be."""
    parser = argparse.ArgumentParser(prog="python -m container.export_builtin", description=__doc__)
    parser.add_argument("model", help="a model directory, a model.tar.gz, or a model_algo-1")
    parser.add_argument("output", help="the model.tar.gz to write (in the built-in FM's layout)")
    arguments = parser.parse_args(argv)
    try:
        written = artifact.export_builtin(arguments.model, arguments.output)
    except artifact.ArtifactError as err:
        print(f"export_builtin: {err}", file=sys.stderr)
        return 1
    print(written)
    return 0


if __name__ == "__main__":
    sys.exit(main())
