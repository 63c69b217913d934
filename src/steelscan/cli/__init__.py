"""The `steelscan` command. Each subcommand lives in its own module and is registered here."""

from __future__ import annotations

import sys

import typer

app = typer.Typer(
    name="steelscan",
    help="Steel strip surface defects: data, training, inspection and grading.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from steelscan import __version__

        typer.echo(f"steelscan {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """Steel strip surface defects: data, training, inspection and grading."""


def _register() -> None:
    # Imported here so that `steelscan --help` stays cheap for modules that import torch lazily.
    from steelscan.cli import (
        classify, convert, detect, evaluate, export, grade, inspect, models, segment, serve, stats, synth, train, tune,
    )

    app.command("stats")(stats.command)
    app.command("convert")(convert.command)
    app.command("synth")(synth.command)
    app.command("train")(train.command)
    app.command("evaluate")(evaluate.command)
    from steelscan.cli import evaluate_coil

    app.command("evaluate-coil")(evaluate_coil.command)
    app.command("classify")(classify.command)
    app.command("detect")(detect.command)
    app.command("segment")(segment.command)
    app.command("tune")(tune.command)
    app.command("export")(export.command)
    app.command("inspect")(inspect.command)
    app.command("grade")(grade.command)
    app.command("models")(models.command)
    app.command("serve")(serve.command)
    from steelscan.cli.benchmark import benchmark_app

    app.add_typer(benchmark_app, name="benchmark")
    from steelscan.cli.experiment import experiment_app

    app.add_typer(experiment_app, name="experiment")


def main(argv: list[str] | None = None) -> int:
    """Entry point: a user's mistake (SteelscanError) is one line on stderr and exit code 2; anything else is a
    bug and shows its traceback. OSErrors on user-given paths are SteelscanErrors at their source."""
    from steelscan.core.errors import SteelscanError

    _register()
    try:
        app(args=argv, standalone_mode=True)
    except SystemExit as exc:
        return int(exc.code or 0)
    except SteelscanError as exc:
        typer.echo(f"steelscan: error: {exc}", err=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
