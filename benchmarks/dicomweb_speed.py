"""``btk predict`` on one 155-slice series: read from files, and through DICOMweb from a local Orthanc.

The series is 155 SARTAJ Training images of one class written by ``btk convert --per-patient
155`` (Secondary Capture, 8-bit). Orthanc (Debian's ``orthanc`` and ``orthanc-dicomweb``) runs on
a loopback port with its own storage. Both reads go through the same prediction stream
(:func:`btk.predict_output.predict_run`) with the same run; each is timed three times after one
warm-up, and the best is kept. Prints slices per second for both and their ratio.

    python benchmarks/dicomweb_speed.py --run runs/<run-id> --data ../shared/data/sartaj
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--data", type=Path, required=True, help="SARTAJ root (155 Training images are used)")
    ap.add_argument("--slices", type=int, default=155)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, help="write the figures here as JSON")
    args = ap.parse_args()

    from btk.default_plugins.convert import write_dicom_series
    from btk.predict_output import predict_run
    from btk.runs import load_run
    from btk.testing import orthanc_server

    run = load_run(args.run)
    work = Path(tempfile.mkdtemp(prefix="btk-dicomweb-speed-"))
    try:
        import cv2

        files = sorted((args.data / "Training" / "glioma_tumor").glob("*.jpg"))[: args.slices]
        images = [cv2.resize(cv2.imread(str(f), cv2.IMREAD_GRAYSCALE), (256, 256)) for f in files]
        series = write_dicom_series(images, work / "series", "SPEED")
        with orthanc_server(work / "orthanc") as pacs:
            pacs.upload(series)

            def timed(source: str, options: dict[str, str] | None = None) -> float:
                best = float("inf")
                for k in range(args.repeats + 1):
                    t0 = time.perf_counter()
                    result = predict_run(run, [source], reader_options=options)
                    seconds = time.perf_counter() - t0
                    assert result.tally.images == len(images), (source, result.tally.images)
                    if k:  # the first is a warm-up (the model is loaded and compiled)
                        best = min(best, seconds)
                return best

            files_s = timed(str(work / "series"))
            web_s = timed(pacs.dicomweb, {"all": "yes"})  # the server holds this one series
        n = len(images)
        figures = {"slices": n, "files_seconds": files_s, "dicomweb_seconds": web_s,
                   "files_slices_per_second": n / files_s, "dicomweb_slices_per_second": n / web_s,
                   "ratio": files_s / web_s, "run": run.name, "image_size": run.config.recipe.image_size,
                   "model": run.config.model_name}
        print(f"{n} slices, run {run.name} ({run.config.model_name}, {run.config.recipe.image_size} px)")
        print(f"files:    {n / files_s:7.1f} slices/s ({files_s:.2f} s)")
        print(f"DICOMweb: {n / web_s:7.1f} slices/s ({web_s:.2f} s), {100 * files_s / web_s:.0f}% of the file speed")
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(figures, indent=1) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()
