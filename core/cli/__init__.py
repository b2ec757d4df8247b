"""The ``polydiff`` command line: ``plugins``, ``train``, ``sample``, ``evaluate``, ``demo``, ``new-plugin``.

Commands come from the ``commands`` registry (the core's own through the built-in plugin, others
through plugins' ``register_commands`` hooks). Bad user input — a :class:`~polydiff.errors.UserInputError`
or a usage error — is one line on stderr and exit code 2, without a traceback.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import typer

from ..errors import NonFiniteLossError, UserInputError

EXIT_USAGE = 2

# typer >= 0.20 vendors click; take the exception classes from typer's own hierarchy so both work.
_UsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")
_ClickException = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def build_app() -> typer.Typer:
    """The typer application with every registered command."""
    from ..plugins import registries

    app = typer.Typer(name="polydiff", help="Diffusion models for non-image data.", no_args_is_help=True,
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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns (and, as a console script, exits with) the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning(warnings.showwarning)
        return _main(args)


def _main(args: list[str]) -> int:
    try:
        command = typer.main.get_command(build_app())
        rv = command.main(args=args, prog_name="polydiff", standalone_mode=False)
        return rv if isinstance(rv, int) else 0
    except UserInputError as exc:
        _error(str(exc))
        return EXIT_USAGE
    except NonFiniteLossError as exc:  # a run that diverged: one line; the checkpoints before it are kept
        _error(str(exc))
        return 1
    except _UsageError as exc:
        _error(f"{exc.format_message()} (see '{_command_path(exc)} --help')")
        return EXIT_USAGE
    except _ClickException as exc:
        _error(exc.format_message())
        return exc.exit_code
    except typer.Abort:
        _error("aborted")
        return 130
    except typer.Exit as exc:
        return exc.exit_code


def _show_warning(default: Callable[..., None]) -> Callable[..., None]:
    """Show a plugin-load warning as one line; other warnings as usual."""
    from ..plugins import PluginLoadWarning

    def show(message: Any, category: type, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
        if issubclass(category, PluginLoadWarning):
            print(f"polydiff: warning: {message}", file=sys.stderr)
        else:
            default(message, category, filename, lineno, file, line)

    return show


def _command_path(exc: Exception) -> str:
    ctx = getattr(exc, "ctx", None)
    return ctx.command_path if ctx is not None and ctx.command_path else "polydiff"


def _error(message: str) -> None:
    line = " ".join(message.split())
    print(f"polydiff: error: {line}", file=sys.stderr)


__all__ = ["build_app", "main"]
