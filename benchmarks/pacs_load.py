"""Load: ``mura predict`` over N real CR instances from a local Orthanc (DICOMweb) against the same files on disk.

The instances are the NEMA tibia CR (JPEG 2000 lossless, 1,760 x 1,760) copied N times under new SOP Instance UIDs
into one study; both runs use 2 decoding workers and the tiny test model (32 px), so the comparison is decode- and
transfer-bound, the case where fetching costs the most. A first, uncounted run exports the model to ONNX; then
runs alternate (disk, pacs, disk, pacs, ...). Wall time includes start-up and model loading; peak memory is GNU
time's maximum resident set size of the largest process; "server CPU" is the CPU seconds Orthanc spent during
the run (it shares this machine's cores with the decoding workers). Run under the heavy lock:
``flock /tmp/mura-heavy.lock python3 benchmarks/pacs_load.py``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from orthanc_server import Orthanc, free_port  # noqa: E402

from synth import SHARED_DATA, save_tiny_run  # noqa: E402

SOURCE = SHARED_DATA / "dicom" / "CR_extremity_tibia_RG3_j2k_lossless.dcm"


def make_copies(folder: Path, n: int) -> str:
    import pydicom
    from pydicom.uid import generate_uid

    ds = pydicom.dcmread(SOURCE)
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    folder.mkdir(parents=True)
    for i in range(1, n + 1):
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.InstanceNumber = i
        ds.save_as(folder / f"{i:04d}.dcm")
    return str(ds.StudyInstanceUID)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    cmd = ["/usr/bin/time", "-f", "TIME %e %M", "mura", "predict", *args, "--out", "r.csv", "--overwrite"]
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    line = [ln for ln in res.stderr.splitlines() if ln.startswith("TIME ")][-1]
    if res.returncode != 0:
        raise SystemExit(f"exit {res.returncode}: {res.stderr[-2000:]}")
    _, wall, kb = line.split()
    return float(wall), int(kb) / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        run = save_tiny_run(work / "run")
        study = make_copies(work / "files", a.n)
        server = Orthanc(work / "orthanc", free_port()).start()
        try:
            for f in sorted((work / "files").iterdir()):
                server.upload(f)
            env = {**os.environ, **server.env}
            sources = {
                "disk": [str(work / "files")],
                "pacs": [server.address, "--study", study],
            }
            timed([*sources["disk"], "--model", str(run), "--workers", "2"], work, env)  # warm-up: the ONNX export
            rows = []
            assert server.process is not None
            for r in range(a.repeats):
                for name, src in sources.items():
                    cpu = cpu_seconds(server.process.pid)
                    wall, mb = timed([*src, "--model", str(run), "--workers", "2"], work, env)
                    cpu = cpu_seconds(server.process.pid) - cpu
                    rows.append((name, r + 1, wall, a.n / wall, mb))
                    print(
                        f"{name} run {r + 1}: {wall:.2f} s, {a.n / wall:.1f} img/s, peak RSS {mb:.0f} MB, "
                        f"server CPU {cpu:.2f} s",
                        flush=True,
                    )
        finally:
            server.stop()
    for name in sources:
        rates = sorted(x[3] for x in rows if x[0] == name)
        mbs = sorted(x[4] for x in rows if x[0] == name)
        print(
            f"{name}: {rates[0]:.1f} / {statistics.median(rates):.1f} / {rates[-1]:.1f} img/s (min / median / max "
            f"over {len(rates)} runs), peak RSS {mbs[0]:.0f}-{mbs[-1]:.0f} MB"
        )
    ratios = sorted(p[3] / d[3] for d, p in zip(rows[::2], rows[1::2], strict=True))
    print(f"pacs / disk, run by run: {ratios[0]:.2f} / {statistics.median(ratios):.2f} / {ratios[-1]:.2f}")


if __name__ == "__main__":
    main()
