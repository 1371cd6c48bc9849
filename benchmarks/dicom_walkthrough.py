"""The walkthrough of docs/dicom.md, run for real: a local Orthanc, a converted SARTAJ series
uploaded to it, ``btk predict`` through DICOMweb with ``--sr --store``, and the stored SR shown
in Orthanc's own web page (a screenshot from headless Chromium).

    python benchmarks/dicom_walkthrough.py --run runs/<run-id> --data ../shared/data/sartaj \\
        --screenshot docs/dicom-orthanc-sr.png --log docs/results/cpu-dicomweb/walkthrough.txt
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--slices", type=int, default=12)
    ap.add_argument("--screenshot", type=Path, default=Path("docs/dicom-orthanc-sr.png"))
    ap.add_argument("--log", type=Path, default=Path("docs/results/cpu-dicomweb/walkthrough.txt"))
    args = ap.parse_args()

    import cv2

    from btk.default_plugins.convert import write_dicom_series
    from btk.testing import orthanc_server

    work = Path(tempfile.mkdtemp(prefix="btk-walkthrough-"))
    log: list[str] = []

    def sh(*cmd: str) -> str:
        log.append("$ " + " ".join(cmd))
        out = subprocess.run(cmd, capture_output=True, text=True)
        text = (out.stdout + out.stderr).strip()
        log.append(text)
        if out.returncode:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{text}")
        return text

    try:
        files = sorted((args.data / "Testing" / "meningioma_tumor").glob("*.jpg"))[: args.slices]
        images = [cv2.resize(cv2.imread(str(f), cv2.IMREAD_GRAYSCALE), (256, 256)) for f in files]
        series = write_dicom_series(images, work / "series", "WALK01")
        with orthanc_server(work / "orthanc") as pacs:
            pacs.upload(series)
            study = pacs.get(f"/studies/{pacs.get('/studies')[0]}")["MainDicomTags"]["StudyInstanceUID"]
            sh("btk", "predict", str(args.run), "--data", pacs.dicomweb, "-R", f"study={study}",
               "--sr", str(work / "sr"), "--store", pacs.dicomweb)
            sr_id = next(i for i in pacs.get("/instances")
                         if pacs.get(f"/instances/{i}/simplified-tags").get("Modality") == "SR")
            report = next((work / "sr").glob("*/*.dcm"))
            if shutil.which("dsrdump"):
                sh("dsrdump", "-Ee", str(report))
            if shutil.which("dciodvfy"):
                out = subprocess.run(["dciodvfy", str(report)], capture_output=True, text=True)
                log += ["$ dciodvfy SR.dcm", (out.stdout + out.stderr).strip()]
            page = f"{pacs.url}/app/explorer.html#instance?uuid={sr_id}"
            args.screenshot.parent.mkdir(parents=True, exist_ok=True)
            chromium = shutil.which("chromium") or shutil.which("chromium-browser") or "chromium"
            subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                            "--virtual-time-budget=8000", "--window-size=1200,1400",
                            f"--screenshot={args.screenshot.resolve()}", page],
                           capture_output=True, text=True, timeout=120)
            log.append(f"screenshot of {page.replace(pacs.url, 'http://localhost:8042')} -> {args.screenshot}")
        args.log.parent.mkdir(parents=True, exist_ok=True)
        args.log.write_text("\n".join(log).replace(str(work), "WORK") + "\n")
        print("\n".join(log))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()
