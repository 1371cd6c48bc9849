"""``btk merge``: the shares of a sharded ``btk predict`` as one table."""

from __future__ import annotations

from pathlib import Path

import click

from btk.commands.options import Output, json_option, out_option


@click.command()
@click.argument("shares", nargs=-1, required=True, type=click.Path(path_type=Path))
@out_option("the merged predictions directory (predictions.csv, predict.json)", default="predictions")
@json_option
def merge(shares: tuple[Path, ...], out: Path, as_json: bool) -> None:
    """Merge the result directories of `btk predict --shard K/N --out DIR` (every K from 1 to N
    once, any order) into one predictions directory: the table the same command without --shard
    writes, row for row.

    \b
    Examples:
      for k in 1 2 3; do btk predict RUN --data scans/ --shard $k/3 --out shares/ & done; wait
      btk merge shares/*-predict-* --out predictions/
    """
    from btk.predict_merge import merge_predictions
    from btk.render import line

    folder = merge_predictions(list(shares), out)
    output = Output(as_json)
    if as_json:
        output.json({"merged": str(folder), "shares": len(shares)})
    else:
        line(output.console, f"{len(shares)} shares merged into {folder}")
