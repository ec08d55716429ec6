"""What every command module shares: the two consoles (results on stdout, everything else on
stderr), the group's error handling, and common option types. Command modules import only this
(and the library); the group in charrnn.cli imports them and adds their commands."""

from __future__ import annotations

import contextlib
import math
import os
import sys

import click
from rich.console import Console

from ..errors import CharrnnError
from ..nn.cells import CELLS, DEFAULT_KERNELS, KERNEL_CHOICES


class _Console(Console):
    """Rich's Console, but a reader that goes away is not fatal. On stdout a BrokenPipeError
    reaches CharrnnGroup, which ends quietly as for `charrnn sample | head`; on stderr the
    console just goes quiet, so a training run whose log reader has gone (`2>&1 | head`) keeps
    going and saves as usual. (Rich's own handler exits with status 1 at once.)"""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        if not self.stderr:
            raise BrokenPipeError
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stderr.fileno())
        except (OSError, ValueError):
            pass


out = _Console(highlight=False)  # results
err = _Console(stderr=True, highlight=False)  # tables, progress, warnings


@contextlib.contextmanager
def _one_line_errors(ctx):
    """The library's errors as one-line messages instead of tracebacks."""
    try:
        yield
    except CharrnnError as e:
        raise click.ClickException(str(e)) from None
    except MemoryError:
        command = ctx.invoked_subcommand or ctx.info_name
        hint = ": try a smaller --batch, --seq or --hidden" if command in (
            "train", "gradcheck", "gradflow") else ""
        raise click.ClickException(f"out of memory{hint}") from None
    except BrokenPipeError:  # e.g. `charrnn sample | head`
        _silence_stdout()
        ctx.exit(0)
    except KeyboardInterrupt:  # Click would print "Aborted!" and exit 1
        # stdout may hold text a full pipe would not take (`charrnn sample | less`, the
        # reader paused): Python's exit-time flush would wait for it forever
        _silence_stdout()
        err.print("interrupted")
        ctx.exit(130)
    except OSError as e:  # e.g. stdout on a full disk (`> /dev/full`)
        _silence_stdout()
        what = f"{e.filename}: " if e.filename else "cannot write output: "
        raise click.ClickException(f"{what}{e.strerror or e}") from None


class CharrnnGroup(click.Group):
    """Turns the library's errors into one-line messages instead of tracebacks."""

    def invoke(self, ctx):
        with _one_line_errors(ctx):
            return super().invoke(ctx)


class CharrnnCommand(click.Command):
    """A command run on its own (`python -m charrnn.data.synthetic`), with the group's error
    handling."""

    def invoke(self, ctx):
        with _one_line_errors(ctx):
            return super().invoke(ctx)


def _silence_stdout():
    """After a broken pipe, point stdout at /dev/null so Python's exit-time flush stays quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


CELL_CHOICE = click.Choice(list(CELLS), case_sensitive=False)


def _finite(value: float) -> float:
    """Click's FloatRange lets nan (and inf, when unbounded above) through."""
    if not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number")
    return value


class FiniteFloat(click.FloatRange):
    """click.FloatRange that also refuses nan and inf, so that Click reports them as usage
    errors naming the option (exit 2), like any other out-of-range value."""

    name = "finite float"

    def convert(self, value, param, ctx):
        value = super().convert(value, param, ctx)
        if not math.isfinite(value):
            self.fail(f"{value} is not a finite number", param, ctx)
        return value


class HiddenArgument(click.Argument):
    """A positional argument left out of the usage line: an old spelling kept working."""

    def get_usage_pieces(self, ctx):
        return []


def alias(*decls, **attrs):
    """A hidden option: an old name kept working for the same parameter. Click arbitrates
    between options that share a parameter name, so the one given on the command line wins."""
    return click.option(*decls, hidden=True, **attrs)


# A file or run directory path; click.Path gives shell completion of file names. Existence is
# checked by the library, whose messages say what was expected ("checkpoint not found: ...").
PATH = click.Path(path_type=str)


CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def open_checkpoint(path, families=None, kernels=None):
    """(file, Checkpoint) for a --checkpoint value, or if None for the latest run under runs/
    (of one of `families`, when given); its model runs `kernels` (Checkpoint.running; None: the
    default, charrnn.nn.cells.DEFAULT_KERNELS)."""
    from .. import checkpoint as C
    from ..runs import find_checkpoint

    file = find_checkpoint(path, families=families)
    ckpt = C.load(file)
    return file, (ckpt.running(kernels) if kernels else ckpt.running())


def kernels_option(command):
    """The --kernels option of the commands that run a saved model (`command` reads its value
    as `kernels` and hands it to open_checkpoint)."""
    return click.option(
        "--kernels", type=click.Choice(KERNEL_CHOICES), default=DEFAULT_KERNELS,
        show_default=True,
        help="The cells' loops: NumPy's, the compiled fused kernels, or auto, fused where they "
        "can be had (see `charrnn train --help`). How the numbers are computed, not what they "
        "are: the two agree to float32 rounding.")(command)


def is_generator(ckpt) -> bool:
    """Whether the checkpoint's family generates from a condition (it has the contract's
    `conditioned_lm` hook: --task generate)."""
    from ..models import family

    return hasattr(family(ckpt.family), "conditioned_lm")


def tasks_with(*hooks: str) -> tuple[str, ...]:
    """The tasks (charrnn.models.FAMILIES) whose family has any of the contract's optional
    `hooks` ("stepper", "conditioned_lm", "ANSWERS"): those a command can use."""
    from ..models import FAMILIES

    return tuple(name for name, F in FAMILIES.items() if any(hasattr(F, h) for h in hooks))


def open_lm(path, command: str, generators: bool = False, kernels=None):
    """open_checkpoint for the commands that need a language model (or, with `generators`, a
    family that generates from a condition, as well); without a path, the newest such run."""
    usable = tasks_with("stepper", *(("conditioned_lm",) if generators else ()))
    file, ckpt = open_checkpoint(path, families=usable, kernels=kernels)
    if ckpt.family not in usable:
        raise click.UsageError(f"{file} holds a {ckpt.family} model; {command} needs a language "
                               f"model (use `charrnn predict` or `charrnn eval` with it)")
    return file, ckpt
