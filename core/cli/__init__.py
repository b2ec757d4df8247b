"""The ``polydiff`` command line: ``plugins``, ``recipes``, ``train``, ``sample``, ``evaluate``, ``show``, ``demo``, ``new-plugin``.

Commands come from the ``commands`` registry (the core's own through the built-in plugin, others
through plugins' ``register_commands`` hooks). This module is the one place that turns errors into
what a user sees:

- bad user input — a :class:`~polydiff.errors.UserInputError` (recipe, data, engine, checkpoint or
  sample options) or a usage error — is one line on stderr (``polydiff: error: ...``) and exit code 2;
- a run that diverged (:class:`~polydiff.errors.NonFiniteLossError`) is one line and exit code 1;
- any other exception is a bug in polydiff or a plugin and keeps its traceback (exit code 1);
- warnings are one line each (``polydiff: warning: ...``), each distinct message once.

The global flag ``--debug`` (anywhere: ``polydiff --debug train ...``) or the environment
variable ``POLYDIFF_DEBUG=1`` shows the traceback of every error, user errors included.
"""

from __future__ import annotations

import os
import sys
import traceback
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import typer

from ..errors import NonFiniteLossError, UserInputError

EXIT_USAGE = 2
DEBUG_ENV = "POLYDIFF_DEBUG"

# typer >= 0.20 vendors click; take the exception classes from typer's own hierarchy so both work.
_UsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")
_ClickException = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def build_app() -> typer.Typer:
    """The typer application with every registered command."""
    from ..plugins import registries

    app = typer.Typer(name="polydiff", help="Diffusion models for non-image data. Global flag: --debug (or "
                      f"{DEBUG_ENV}=1) shows the traceback of any error.", no_args_is_help=True,
                      add_completion=False, pretty_exceptions_enable=False)
    for entry in registries().commands.entries():
        info = entry.obj
        if isinstance(info, typer.models.CommandInfo):
            if info.name is None:
                info.name = entry.name
            app.registered_commands.append(info)
        else:
            app.registered_groups.append(info)
    return app


def debug_enabled() -> bool:
    """Whether ``POLYDIFF_DEBUG`` asks for tracebacks (``1``, ``true``, ``yes``, ``on``)."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns (and, as a console script, exits with) the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = debug_enabled()
    if "--debug" in args:  # a global flag, accepted before or after the command name
        debug = True
        args = [a for a in args if a != "--debug"]
    with warnings.catch_warnings():  # Python's filters decide what is shown; the hook shows it as one line, once
        warnings.showwarning = _show_warning(debug)
        return _main(args, debug=debug)


def _main(args: list[str], *, debug: bool) -> int:
    try:
        command = typer.main.get_command(build_app())
        rv = command.main(args=args, prog_name="polydiff", standalone_mode=False)
        if args[:1] == ["sample"] and ("--help" in args or "-h" in args):
            _sample_help_epilogue(args[1:])
        return rv if isinstance(rv, int) else 0
    except UserInputError as exc:
        _error(str(exc), exc if debug else None)
        return EXIT_USAGE
    except NonFiniteLossError as exc:  # a run that diverged: one line; the checkpoints before it are kept
        _error(str(exc), exc if debug else None)
        return 1
    except _UsageError as exc:
        _error(f"{exc.format_message()} (see '{_command_path(exc)} --help')", exc if debug else None)
        return EXIT_USAGE
    except _ClickException as exc:
        _error(exc.format_message(), exc if debug else None)
        return exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        _error("aborted")
        return 130
    except typer.Exit as exc:
        return exc.exit_code


def _sample_help_epilogue(args: list[str]) -> None:
    """After ``polydiff sample RUN --help``: the sample options of RUN's recipe."""
    from .info import run_sample_options_text

    text = run_sample_options_text(args)
    print(text if text is not None else "Name a run (polydiff sample RUN --help) to list its recipe's options.")


def _show_warning(debug: bool) -> Callable[..., None]:
    """Show every warning as one line ``polydiff: warning: MESSAGE``, each distinct message once.

    With ``debug`` the line also names the category and the file and line that warned.
    """
    seen: set[str] = set()

    def show(message: Any, category: type, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
        text = " ".join(str(message).split())
        if text in seen:
            return
        seen.add(text)
        where = f" [{category.__name__} at {filename}:{lineno}]" if debug else ""
        try:
            print(f"polydiff: warning: {text}{where}", file=sys.stderr if file is None else file, flush=True)
        except OSError:  # pragma: no cover - a closed stderr
            pass

    return show


def _command_path(exc: Exception) -> str:
    ctx = getattr(exc, "ctx", None)
    return ctx.command_path if ctx is not None and ctx.command_path else "polydiff"


def _error(message: str, exc: BaseException | None = None) -> None:
    if exc is not None:  # --debug: the whole story first, then the one line
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    line = " ".join(message.split())
    print(f"polydiff: error: {line}", file=sys.stderr, flush=True)


__all__ = ["build_app", "debug_enabled", "main"]
