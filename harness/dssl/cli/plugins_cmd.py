"""``dssl plugins``: installed plugin distributions, their components and their failures."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from dssl.cli.context import host_from_context

if TYPE_CHECKING:
    from rich.console import Console


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--verbose", "-v", is_flag=True, help="Show full tracebacks of failed plugins.")
@click.option("--wide", is_flag=True, help="Show every summary whole (default: cut to the terminal's width).")
@click.pass_context
def plugins(ctx: click.Context, as_json: bool, verbose: bool, wide: bool) -> None:
    """List plugin distributions, the components they contribute, and plugins that failed to load."""
    host = host_from_context(ctx)
    if as_json:
        payload = [
            {
                "distribution": r.distribution,
                "version": r.version,
                "entry_point": r.entry_point,
                "status": r.status,
                "error": r.error,
                "api_range": r.api_range,
                "hooks": r.hooks,
                "declared": [{"kind": kind, "name": name} for kind, name in sorted(r.declared)],
                "components": [
                    {"kind": c.kind, "name": c.name, "summary": c.summary, "paper": c.paper} for c in r.components
                ],
            }
            for r in host.records
        ]
        click.echo(json.dumps(payload, indent=2))
        return

    from rich.console import Console

    print_plugins(host.records, Console(), wide=wide, verbose=verbose)


def print_plugins(records: list[Any], console: Console, *, wide: bool = False, verbose: bool = False) -> None:
    """The listing: per distribution, one line per component (kind, name, summary), then the failures.

    Summaries are cut to the console's width with an ellipsis unless ``wide``; errors are wrapped, never cut.

    Args:
        records: The plugin host's records.
        console: Where to print (its width decides where summaries are cut).
        wide: Show every summary whole (wrapped) and what failed plugins would have provided.
        verbose: Show full tracebacks of failed plugins.
    """
    from rich.table import Table
    from rich.text import Text

    console.print(Text("dssl components", style="bold"))
    loaded = [r for r in records if r.status == "loaded"]
    entries = [e for r in loaded for e in r.components]
    # One width for every distribution's block, so that the columns line up down the listing.
    kind_width = 2 + max((len(e.kind) for e in entries), default=4)
    name_width = max((len(e.name) for e in entries), default=4)
    summary_width = max(20, console.width - kind_width - name_width - 4)
    for record in loaded:
        header = Text(f"{record.distribution} {record.version}", style="bold cyan")
        header.append(f"  plugin API {record.api_range or 'range not declared'}", style="dim")
        console.print(header)
        table = Table(box=None, show_header=False, pad_edge=False, padding=(0, 1), expand=False)
        table.add_column("kind", style="dim", no_wrap=True, min_width=kind_width)
        table.add_column("name", style="bold", no_wrap=True, min_width=name_width)
        table.add_column("summary", no_wrap=not wide, overflow="fold" if wide else "ellipsis", max_width=summary_width)
        previous_kind = None
        for entry in record.components:
            table.add_row(f"  {entry.kind}" if entry.kind != previous_kind else "", entry.name, entry.summary)
            previous_kind = entry.kind
        for index, hook in enumerate(record.hooks):
            table.add_row("  hook" if index == 0 else "", hook, "lifecycle hook")
        if not record.components and not record.hooks:
            table.add_row("", "-", "(no components)")
        console.print(table)

    problems = [r for r in records if r.status != "loaded"]
    if not problems:
        return
    console.print()
    console.print(Text("plugins not loaded", style="bold red"))
    for record in problems:
        line = Text(f"{record.distribution} {record.version}", style="bold")
        line.append(f" (entry point {record.entry_point}): {record.status}")
        error = record.detail if verbose and record.detail else record.error
        if error:
            line.append(f" — {error}")
        if wide and record.declared:
            provided = ", ".join(f"{kind} {name}" for kind, name in sorted(record.declared))
            line.append(f"; would provide {provided}")
        console.print(line, overflow="fold")
