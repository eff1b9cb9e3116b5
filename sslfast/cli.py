"""`sslfast` command line. Each subcommand lives in its own module and is imported lazily,
so `sslfast env` never pays for triton, DALI or matplotlib.

Errors. A *user error* — something the person running the command can fix: a bad flag value, an
invalid config or YAML file, a missing/foreign checkpoint, a corrupt dataset file, a malformed
results file, a missing file, a collective that timed out because another rank is stuck — prints
``sslfast <cmd>: error: <message>`` on stderr and exits with status 2, without a traceback.
Flag values are checked by each command's argparse types, which report the same way (argparse's
own ``sslfast <cmd>: error: argument --k: ...``, status 2). Anything else is a bug: its traceback
is kept, with a note saying so. ``sslfast --debug <cmd> ...`` (``--debug`` may also follow the
command) or ``SSLFAST_DEBUG=1`` shows the traceback of user errors too. Ctrl-C exits with 130.

The user errors are the classes in ``USER_ERRORS``. A plain ``ValueError``/``TypeError`` is *not*
one: raised deep inside torch or a library it is a bug, so each command validates its inputs up
front and raises one of the classes below (``ConfigError`` is a ``ValueError`` subclass).
"""

from __future__ import annotations

import importlib
import os
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
    "gate": "sslfast.benchmarks.gpu_gate",
}

# Exceptions that mean "the input is wrong", by defining module. They are looked up only when an
# exception reaches the top, and only in modules already imported (an exception cannot be an
# instance of a class whose module was never loaded), so no command pays for an import it skips.
USER_ERRORS = {
    "builtins": ("FileNotFoundError", "IsADirectoryError", "NotADirectoryError", "PermissionError"),
    "sslfast.train.config": ("ConfigError",),
    "sslfast.train.checkpoint": ("CheckpointError",),
    "sslfast.data_pipelines.datasets": ("DatasetError",),
    "sslfast.report.schema": ("ResultsError", "ReportError"),
    "sslfast.distributed": ("CollectiveError",),
    "yaml": ("YAMLError",),  # a config file that is not valid YAML (or uses a refused tag)
}

DEBUG_ENV = "SSLFAST_DEBUG"

USAGE = f"""usage: sslfast [--debug] <command> [options]

commands:
  env                     versions, device, interpreter, what backend='auto' resolves to
  bench <{"|".join(BENCHES)}>   benchmarks (results JSON under bench/results/)
  train                   self-supervised training run
  eval                    kNN / linear-probe evaluation of a checkpoint
  report                  markdown report + plots from bench/results/*.json

`sslfast <command> --help` for its options. User errors exit with status 2 and a one-line message;
--debug (or {DEBUG_ENV}=1) shows their traceback."""


def user_error_types() -> tuple[type[BaseException], ...]:
    """The user-error classes among the modules imported so far (see ``USER_ERRORS``)."""
    found = []
    for module, names in USER_ERRORS.items():
        mod = sys.modules.get(module)
        if mod is not None:
            found.extend(cls for cls in (getattr(mod, n, None) for n in names) if isinstance(cls, type))
    return tuple(found)


def is_user_error(e: BaseException) -> bool:
    return isinstance(e, user_error_types())


def _message(e: BaseException) -> str:
    text = str(e).strip()
    if isinstance(e, OSError) and e.filename is not None and str(e.filename) not in text:
        text = f"{text}: {e.filename}"
    return text or type(e).__name__


def _exit_code(e: SystemExit) -> int:
    if e.code is None:
        return 0
    if isinstance(e.code, int):
        return e.code
    print(e.code, file=sys.stderr)
    return 1


def run_command(name: str, fn, argv: list[str], debug: bool = False) -> int:
    """``fn(argv)`` with the CLI's error contract (module docstring); returns the exit status."""
    debug = debug or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    try:
        return int(fn(argv) or 0)
    except SystemExit as e:  # argparse errors (status 2, message printed) and --help (0)
        return _exit_code(e)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"sslfast {name}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if not debug and is_user_error(e):
            print(f"sslfast {name}: error: {_message(e)}", file=sys.stderr)
            return 2
        if not is_user_error(e) and hasattr(e, "add_note"):
            e.add_note(f"sslfast {name}: internal error, a bug in sslfast; please report it with this traceback")
        raise


def _run(name: str, module: str, argv: list[str], debug: bool) -> int:
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name == module:
            print(f"sslfast: '{module}' is not available in this build", file=sys.stderr)
            return 2
        raise
    return run_command(name, mod.main, argv, debug)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    if cmd == "bench":
        if not rest or rest[0] not in BENCHES:
            print(f"usage: sslfast bench <{'|'.join(BENCHES)}> [options]", file=sys.stderr)
            return 2
        from .env import git_sha

        git_sha()  # the commit this benchmark starts from, before it runs for minutes (env.git_sha)
        return _run(f"bench {rest[0]}", BENCHES[rest[0]], rest[1:], debug)
    if cmd not in COMMANDS:
        print(f"sslfast: unknown command {cmd!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    return _run(cmd, COMMANDS[cmd], rest, debug)


if __name__ == "__main__":
    sys.exit(main())
