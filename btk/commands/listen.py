"""``btk listen``: btk as a hospital node that receives studies by DICOM and answers each once."""

from __future__ import annotations

from pathlib import Path

import click

from btk.commands.options import STORE_HELP, Output, check_store, json_option
from btk.urls import refuse_credentials


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path), required=False)
@click.option("--node", "folder", type=click.Path(path_type=Path), required=True, metavar="DIR",
              help="The node's folder: its journal, the instances received and not yet answered, the results "
                   "written and node.log (one JSON line per event). A restarted node goes on from it.")
@click.option("--port", type=click.IntRange(1, 65535), default=11112, show_default=True,
              help="The DICOM port to listen on.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="The address to listen on: loopback unless told otherwise (0.0.0.0: every interface).")
@click.option("--ae-title", default="BTK", show_default=True, help="The node's AE title.")
@click.option("--allow", "allowed", multiple=True, metavar="AE",
              help="A calling AE title let in (repeatable); others are refused at association. Without it any "
                   "caller is let in.")
@click.option("--tls-cert", type=click.Path(path_type=Path), metavar="PEM",
              help="DICOM over TLS: the node's certificate (with --tls-key); then a plain association is refused.")
@click.option("--tls-key", type=click.Path(path_type=Path), metavar="PEM", help="The private key of --tls-cert.")
@click.option("--tls-ca", type=click.Path(path_type=Path), metavar="PEM",
              help="With --tls-cert: callers must present a certificate this CA signed (mutual TLS).")
@click.option("--store", metavar="URL", callback=check_store,
              help="Where the SRs (and maps) are sent, e.g. the PACS the studies come from. " + STORE_HELP)
@click.option("--follow", metavar="URL", callback=refuse_credentials,
              help="Also pull: follow this Orthanc (its REST root, e.g. http://127.0.0.1:8042) for new studies: each "
                   "study it calls stable is fetched (its images only) and answered as a sent one. Credentials as for "
                   "--store.")
@click.option("--follow-every", type=click.FloatRange(0.5), default=5.0, show_default=True, metavar="SECONDS",
              help="How often --follow reads the server's changes.")
@click.option("--stable", type=click.FloatRange(0.0), default=10.0, show_default=True, metavar="SECONDS",
              help="A study is complete, and answered, once no instance of it has come for this long.")
@click.option("--partial-wait", type=click.FloatRange(0.0), default=300.0, show_default=True, metavar="SECONDS",
              help="A study whose sender broke off the association in the middle of it (aborted, or the connection "
                   "dropped) waits this long after its last instance for the rest (a PACS sends it again), instead "
                   "of --stable.")
@click.option("--partial", type=click.Choice(["answer", "hold"]), default="answer", show_default=True,
              help="What then becomes of a broken-off study that got no more: answered with the instances that came "
                   "(the log line says it was partial), or held as failed for a person.")
@click.option("--min-confidence", type=click.FloatRange(0.0, 1.0), default=0.0, show_default=True, metavar="P",
              help="As btk predict: 'uncertain' below P, and then the SR asserts no class present or absent.")
@click.option("--coverage", type=float, metavar="C", help="As btk predict: each slice's prediction set at C.")
@click.option("--maps", is_flag=True, help="Also each slice's Grad-CAM map (a DICOM Segmentation), sent with the SR.")
@click.option("--spool-limit", type=click.FloatRange(0.0), default=10240.0, show_default=True, metavar="MIB",
              help="The most disk the instances kept may take; past it a new instance is refused with C-STORE's "
                   "'out of resources', which a PACS sends again later, and the refusal is logged. 0: no limit.")
@click.option("--keep", is_flag=True, help="Keep the received instances for good [deleted after --late-window].")
@click.option("--late-window", type=click.FloatRange(0.0), default=600.0, show_default=True, metavar="SECONDS",
              help="How long an answered study's instances are kept: an instance of it that comes in that time has "
                   "the study answered again, with an SR that amends the first (Predecessor Documents). Later ones "
                   "are counted as late and not answered. 0: deleted once the answer is sent.")
@click.option("--drift-window", type=click.IntRange(0), default=50, show_default=True, metavar="SERIES",
              help="After each answer, btk's shift check on the last SERIES series answered against the run's "
                   "calibration images (the network's features, a series counted once; no verdict below 20): in the "
                   "log and --status, so a new scanner or protocol shows before errors do. 0: off.")
@click.option("--batch", type=click.IntRange(1), default=16, show_default=True, metavar="STUDIES",
              help="At most this many due studies are predicted and sent together (under load the node keeps up "
                   "as btk predict does on a folder).")
@click.option("--tries", type=click.IntRange(1), default=5, show_default=True,
              help="Tries at a study before it is marked failed (the destination down, say).")
@click.option("--back-off", type=click.FloatRange(0.1), default=10.0, show_default=True, metavar="SECONDS",
              help="The wait before a failed try is tried again; it doubles with each try (at most 600 s).")
@click.option("--status", is_flag=True,
              help="Print what the node in --node has done (studies by state, instances, late ones, events, "
                   "spool size) and exit; RUN is not needed.")
@json_option
def listen(run_dir: Path | None, folder: Path, port: int, host: str, ae_title: str, allowed: tuple[str, ...],
           tls_cert: Path | None, tls_key: Path | None, tls_ca: Path | None, store: str | None,
           follow: str | None, follow_every: float, stable: float, partial_wait: float, partial: str,
           min_confidence: float, coverage: float | None, maps: bool, spool_limit: float, keep: bool,
           late_window: float, drift_window: int, batch: int, tries: int, back_off: float, status: bool,
           as_json: bool) -> None:
    """Be a DICOM node: receive studies (C-STORE), answer each complete study once with RUN, and
    send the SRs back to --store.

    A study is complete when no instance of it has come for --stable seconds. Its series are
    predicted as btk predict does (the same scorer, sets and --min-confidence) and its SRs (and
    maps) are the ones btk predict --sr writes for the same files. Every instance received and
    every result sent is in the node's journal: after a crash or kill, start the node again on
    the same --node folder and it answers what it had received and not answered, and sends
    nothing twice (the result UIDs come from the sources, the model and the calibration, and the
    destination is asked what it holds first). SIGTERM or Ctrl-C: no new association is taken,
    the study in flight is finished, then the node stops.

    With --follow the node also pulls: it reads an Orthanc's change log and fetches each study
    Orthanc calls stable, then answers it as one it was sent.

    A sender that breaks off in the middle of a study (an aborted association, a dropped
    connection) leaves the study waiting --partial-wait for the rest; then it is answered with
    what came, or held for a person (--partial hold), and node.log says which.

    Non-image objects (SR, SEG: btk's own results too) are acknowledged, recorded and not kept,
    so a PACS that routes everything to the node starts no loop. An instance that comes after
    its study was answered, within --late-window, has the study answered again with an SR that
    amends the first; later it is counted as late and not answered.

    \b
    Examples:
      btk listen runs/20261127-101500-fast --node node/ --port 11112 --allow ORTHANC \\
          --store http://127.0.0.1:8042/dicom-web
      btk listen runs/20261127-101500-fast --node node/ --follow http://127.0.0.1:8042 \\
          --store http://127.0.0.1:8042/dicom-web
      btk listen --node node/ --status
    """
    import json
    import signal
    import threading

    from btk.errors import BtkError
    from btk.node.receiver import Door, tls_context
    from btk.node.service import NodeSettings, node_status, serve
    from btk.render import line

    output = Output(as_json)
    if status:
        counts = node_status(folder)
        if as_json:
            output.json(counts)
        else:
            from btk.render.tables import render_node_status

            render_node_status(counts, folder, output.console)
        return
    if run_dir is None:
        raise BtkError("btk listen needs the RUN that answers the studies (or --status)")
    if not store:
        raise BtkError("btk listen needs --store URL: the DICOMweb server (or dicom://HOST:PORT/AE_TITLE) its SRs "
                       "are sent to")
    if follow and not follow.startswith(("http://", "https://")):
        raise BtkError(f"--follow {follow}: give the http(s) URL of an Orthanc, e.g. http://127.0.0.1:8042")
    if coverage is not None:
        from btk.conformal import check_coverage

        coverage = check_coverage(coverage)
    if (tls_cert is None) != (tls_key is None) or (tls_ca is not None and tls_cert is None):
        raise BtkError("DICOM over TLS needs --tls-cert and --tls-key together (and --tls-ca only with them)")
    tls = None
    if tls_cert is not None and tls_key is not None:
        tls_context(tls_cert, tls_key, tls_ca)  # refused in one line here, before anything is made
        tls = (str(tls_cert), str(tls_key), str(tls_ca) if tls_ca is not None else None)
    settings = NodeSettings(folder, Door(port, ae_title, host, tuple(allowed), tls), store, stable, partial_wait,
                            partial, min_confidence, coverage, maps, keep, late_window, batch, drift_window, tries,
                            back_off, follow=follow, follow_every=follow_every, spool_limit_mb=spool_limit)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())

    def show(record: dict) -> None:  # one line per event: JSON on standard output with --json
        if as_json:
            click.echo(json.dumps(record))
        else:
            line(output.console, " ".join(f"{k}={v}" for k, v in record.items()))

    counts = serve(run_dir, settings, stop, show)
    if not as_json:
        line(output.console, f"stopped: {counts['studies']['answered']} studies answered, "
                             f"{counts['studies']['failed']} failed, {counts['studies']['receiving']} waiting")
