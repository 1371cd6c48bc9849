"""``btk plugins``: what is installed."""

from __future__ import annotations

import click

from btk.commands.options import Output, json_option


@click.command()
@json_option
def plugins(as_json: bool) -> None:
    """List the plugins, where each came from, and what each registered."""
    from btk.plugins import describe_plugins, get_host
    from btk.render.tables import render_plugins

    host = get_host()
    output = Output(as_json)
    if as_json:
        output.json({"plugins": describe_plugins(host), "problems": host.problems})
        return
    render_plugins(describe_plugins(host), host.problems, output.console)
