"""`sslfast` command line. Each subcommand lives in its own module and is imported lazily,
so `sslfast env` never pays for triton, DALI or matplotlib."""

from __future__ import annotations

import importlib
import sys

# command -> module with `main(argv: list[str]) -> int | None`
COMMANDS = {
    "env": "sslfast.env",
    "train": "sslfast.train.cli",
    "eval": "sslfast.eval.cli",
    "report": "sslfast.report.build",
}
BENCHES = {
    "losses": "sslfast.benchmarks.losses",
    "augment": "sslfast.benchmarks.augment",
    "epoch": "sslfast.benchmarks.epoch",
    "tta": "sslfast.benchmarks.tta",
    "convergence": "sslfast.benchmarks.convergence",
}

USAGE = f"""usage: sslfast <command> [options]

commands:
  env                     versions, device, interpreter, what backend='auto' resolves to
  bench <{"|".join(BENCHES)}>   benchmarks (results JSON under bench/results/)
  train                   self-supervised training run
  eval                    kNN / linear-probe evaluation of a checkpoint
  report                  markdown report + plots from bench/results/*.json

`sslfast <command> --help` for its options."""


def _run(module: str, argv: list[str]) -> int:
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name == module:
            print(f"sslfast: '{module}' is not available in this build", file=sys.stderr)
            return 2
        raise
    return int(mod.main(argv) or 0)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    if cmd == "bench":
        if not rest or rest[0] not in BENCHES:
            print(f"usage: sslfast bench <{'|'.join(BENCHES)}> [options]", file=sys.stderr)
            return 2
        return _run(BENCHES[rest[0]], rest[1:])
    if cmd not in COMMANDS:
        print(f"sslfast: unknown command {cmd!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    return _run(COMMANDS[cmd], rest)


if __name__ == "__main__":
    sys.exit(main())
