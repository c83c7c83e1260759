"""``dssl new-plugin NAME --kind KIND``: scaffold a third-party plugin package."""

from __future__ import annotations

import click

from dssl.scaffold import KINDS


@click.command("new-plugin")
@click.argument("name")
@click.option(
    "--kind",
    "kinds",
    multiple=True,
    type=click.Choice(KINDS),
    help="What the package contributes (repeatable; default: objective): a component kind, or a lifecycle hook.",
)
@click.option("--output-dir", "-o", default=".", show_default=True, type=click.Path(file_okay=False))
@click.option("--force", is_flag=True, help="Overwrite an existing non-empty folder.")
def new_plugin(name: str, kinds: tuple[str, ...], output_dir: str, force: bool) -> None:
    """Create dssl-NAME/: pyproject with the entry point, one working example per --kind with its options model,
    a README and a conformance test that fails when the plugin does not load, registers nothing or collides."""
    from dssl.scaffold import bench_command, scaffold_plugin

    kinds = kinds or ("objective",)
    root = scaffold_plugin(name, output_dir, kinds=kinds, force=force)
    click.echo(f"created {root}")
    click.echo(f"next: pip install -e {root} && dssl plugins && pytest {root}/tests")
    click.echo(f"      {bench_command(name, kinds)}")
