"""``dssl`` entry point: the command group, global plugin options and the error-to-exit-code mapping.

Exit codes: 0 success, 1 the run failed, 2 usage or configuration error, 75 preempted (checkpoint written:
requeue and resume), 130 interrupted.
"""

from __future__ import annotations

from typing import Any

import click

from dssl import __version__
from dssl.errors import REQUEUE_EXIT_CODE, DsslError


class DsslGroup(click.Group):
    """Maps dssl's errors to one short line and an exit code; ``--debug`` shows the traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DsslError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.secho(f"{exc.label}: {exc}", fg="yellow" if exc.exit_code == REQUEUE_EXIT_CODE else "red", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.secho("interrupted", fg="yellow", err=True)
            ctx.exit(130)


@click.group(cls=DsslGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, "--version", prog_name="dssl")
@click.option("--strict-plugins", is_flag=True, help="Fail when any plugin fails to load (default: skip it).")
@click.option(
    "--disable-plugin",
    "disabled",
    multiple=True,
    metavar="DIST",
    help="Skip the plugin distribution DIST (repeatable; also $DSSL_DISABLE_PLUGINS=a,b).",
)
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.pass_context
def cli(ctx: click.Context, strict_plugins: bool, disabled: tuple[str, ...], debug: bool) -> None:
    """dssl: benchmark harness for dense self-supervised learning.

    \b
    Quick start (CPU, embedded data, no downloads):
      dssl bench --objective dino --backbone vit_cpu8
      dssl grid benchmarks/cpu-smoke.yaml
      dssl leaderboard
    """
    ctx.ensure_object(dict)
    ctx.obj.update(strict=strict_plugins, disabled=disabled, debug=debug)


def _register_commands() -> None:
    from dssl.cli.bench_cmd import bench, evaluate
    from dssl.cli.grid_cmd import grid
    from dssl.cli.leaderboard_cmd import leaderboard, ui
    from dssl.cli.new_plugin_cmd import new_plugin
    from dssl.cli.plugins_cmd import plugins
    from dssl.cli.report_cmd import report
    from dssl.cli.sync_cmd import sync

    for command in (plugins, bench, evaluate, grid, leaderboard, report, sync, ui, new_plugin):
        cli.add_command(command)


_register_commands()


def main() -> None:
    cli(prog_name="dssl")


if __name__ == "__main__":
    main()
