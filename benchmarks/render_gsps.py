"""Render a mura-cli presentation state over its radiograph with dcmtk, for the README's PACS screenshot.

dcmtk's ``dcmp2pgm -p PR IMAGE`` applies the presentation state's grayscale pipeline (modality LUT, VOI window,
presentation LUT: INVERSE for a MONOCHROME1 source) and, with ``-v``, prints the graphic objects it parsed from
the presentation state; it does not draw vector graphics into the bitmap. This script takes dcmtk's bitmap and
draws the polylines exactly as dcmtk printed them (pixel units, (0, 0) = top-left corner of the top-left pixel),
so what the PNG shows is what dcmtk read from the DICOM objects, not what mura-cli meant to write.

Usage: python3 benchmarks/render_gsps.py PR.dcm IMAGE.dcm OUT.png [--width 720]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("pr")
    ap.add_argument("image")
    ap.add_argument("out")
    ap.add_argument("--width", type=int, default=720)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        pgm = Path(tmp) / "render.pgm"
        cmd = ["dcmp2pgm", "-v", "-p", str(Path(a.pr).resolve()), str(Path(a.image).resolve()), str(pgm)]
        res = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=tmp)
        img = Image.open(pgm).convert("RGB")
    dump = res.stdout + res.stderr
    lines = [ln.split("coordinates:")[1] for ln in dump.splitlines() if "coordinates:" in ln]
    texts = re.findall(r'text \d+: "([^"]*)"\s+I:\s+anchor point: ([\d.]+)\\([\d.]+)', dump)
    draw = ImageDraw.Draw(img)
    width = max(3, round(img.width / 250))
    for ln in lines:
        pts = [tuple(float(v) for v in p.split("\\")) for p in ln.split(",") if p.strip()]
        draw.line(pts, fill=(0, 220, 0), width=width)
    for text, x, y in texts:
        draw.text((float(x) + width, float(y)), text, fill=(0, 220, 0), font_size=round(img.height / 30))
    img.thumbnail((a.width, a.width))
    img.save(a.out)
    print(f"{a.out}: {len(lines)} polyline(s), {len(texts)} text(s) from dcmtk's reading of {a.pr}")


if __name__ == "__main__":
    main()
