"""``mura predict`` / ``mura localize`` against a real PACS (Orthanc with its DICOMweb plugin, started per module):
radiographs fetched by study UID (QIDO-RS + WADO-RS), results sent back (STOW-RS) into the same studies; a server
that stops mid-run, wrong credentials, an unknown study and an unreachable server each give the documented
outcome."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pydicom
import pytest

from orthanc_server import Orthanc, free_port, missing

from synth import SHARED_DATA, mura, one_error_line, save_tiny_run

pytest.importorskip("dicomweb_client", reason="DICOMweb needs dicomweb-client (pip install 'mura-cli[pacs]')")
pytest.importorskip("highdicom", reason="DICOM results need highdicom (pip install 'mura-cli[pacs]')")
DICOM = SHARED_DATA / "dicom"
UPLOADS = (
    "CR_extremity_tibia_RG3_uncompressed_explicitLE.dcm",
    "CR_hip_RG2_jpegls_lossless.dcm",
    "CR_cspine_16x16_tiny_pydicom_bundled.dcm",
)


@pytest.fixture(scope="module")
def pacs(tmp_path_factory):
    """A running Orthanc holding three real CR studies; ``(server, study UIDs, model run folder)``."""
    why = missing()
    if why:
        pytest.skip(why)
    if not DICOM.is_dir():
        pytest.skip(f"real DICOMs not found at {DICOM}")
    root = tmp_path_factory.mktemp("pacs")
    server = Orthanc(root / "orthanc", free_port()).start()
    try:
        studies = [pydicom.dcmread(DICOM / n, stop_before_pixels=True).StudyInstanceUID for n in UPLOADS]
        for name in UPLOADS:
            assert server.upload(DICOM / name)["Status"] == "Success"
        yield server, studies, save_tiny_run(root / "run")
    finally:
        server.stop()


def _study_args(studies: list[str]) -> list[str]:
    return [a for s in studies for a in ("--study", s)]


@pytest.mark.slow
def test_round_trip_predict_and_localize_from_and_back_to_orthanc(pacs, tmp_path):
    server, studies, run = pacs
    common = [server.address, *_study_args(studies), "--model", run, "--send", server.address, "--workers", "0"]
    res = mura("predict", *common, "--dicom-out", "p", "--out", "p.csv", cwd=tmp_path, env=server.env)
    assert res.returncode == 0, res.stderr
    assert "stored (STOW-RS)" in res.stdout and "3 of 3" in res.stdout
    rows = list(csv.DictReader((tmp_path / "p.csv").open()))
    assert sorted(r["study"] for r in rows) == sorted(studies)
    res = mura("localize", *common, "--dicom-out", "l", "--out", "l.json", cwd=tmp_path, env=server.env)
    assert res.returncode == 0, res.stderr  # the SRs stored by predict are not read back as inputs
    assert "9 of 9" in res.stdout
    sources = {s: {i["00080018"]["Value"][0] for i in server.qido(f"studies/{s}/instances")} for s in studies}
    for kind_dir in ("p", "l"):
        for f in (tmp_path / kind_dir).rglob("*.dcm"):
            local = pydicom.dcmread(f)
            stored = server.instance_file(local.StudyInstanceUID, local.SOPInstanceUID)  # in the source's study
            (tmp_path / "stored.dcm").write_bytes(stored)
            _check_dciodvfy(tmp_path / "stored.dcm")
            assert _referenced(local) <= sources[local.StudyInstanceUID]  # references resolve on the PACS


def _referenced(ds: pydicom.Dataset) -> set[str]:
    refs: set[str] = set()
    for elem in ds.iterall():
        if elem.keyword == "ReferencedSOPInstanceUID" and elem.value != ds.SOPInstanceUID:
            refs.add(str(elem.value))
    assert refs
    return refs


def _check_dciodvfy(path: Path) -> None:
    if not shutil.which("dciodvfy"):
        return
    res = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, check=False)
    errors = [ln for ln in (res.stdout + res.stderr).splitlines() if ln.startswith("Error")]
    assert not errors, errors


@pytest.mark.slow
def test_orthanc_stopped_mid_run_names_the_instances_it_could_not_fetch(tmp_path):
    """Orthanc is killed as soon as the first of 12 instances is scored: the rest are named failures, exit 6, and
    the results written are whole."""
    why = missing()
    if why or not DICOM.is_dir():
        pytest.skip(why or f"real DICOMs not found at {DICOM}")
    server = Orthanc(tmp_path / "orthanc", free_port()).start()
    n = 12
    try:
        ds = pydicom.dcmread(DICOM / UPLOADS[2])  # the real 16x16 C-spine, as 12 instances of one series
        for i in range(1, n + 1):
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
            ds.InstanceNumber = i
            ds.save_as(tmp_path / "copy.dcm")
            server.upload(tmp_path / "copy.dcm")
        run = save_tiny_run(tmp_path / "run")
        args = [server.address, "--model", run, "--out", "r.csv", "--workers", "0", "--batch-size", "1"]
        env = {**server.env, "COLUMNS": "200"}
        proc = subprocess.Popen(
            [shutil.which("mura") or "mura", "predict", *map(str, args)],
            cwd=tmp_path,
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        journal = tmp_path / "r.csv.partial.jsonl"  # scored frames are journalled as they come
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if journal.exists() and '"frame"' in journal.read_text():
                break
            time.sleep(0.01)
        assert server.process is not None
        server.process.kill()  # as a crash or a pulled cable: no graceful shutdown
        out, err = proc.communicate(timeout=120)
    finally:
        server.stop()
    assert proc.returncode == 6, err
    failures = list(csv.DictReader((tmp_path / "r.errors.csv").open()))
    assert failures and all(f["path"].startswith(server.rest) for f in failures)
    assert all("could not fetch" in f["reason"] for f in failures)
    scored = list(csv.DictReader((tmp_path / "r.csv").open()))
    assert sum(int(r["images"]) for r in scored) + len(failures) == n  # one study: images scored + failed
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "a temporary file was left"
    print(out, err, file=sys.stderr)


@pytest.mark.slow
def test_wrong_credentials_unknown_study_and_unreachable_server_are_one_line(pacs, tmp_path):
    server, studies, run = pacs
    bad = {**server.env, "MURA_DICOMWEB_PASSWORD": "wrong"}
    res = mura("predict", server.address, "--study", studies[0], "--model", run, cwd=tmp_path, env=bad)
    line = one_error_line(res)
    assert res.returncode == 5 and "HTTP 401" in line and "wrong" not in res.stderr + res.stdout
    res = mura("predict", server.address, "--study", "1.2.3.4", "--model", run, cwd=tmp_path, env=server.env)
    assert res.returncode == 3 and "no study 1.2.3.4" in one_error_line(res)
    start = time.monotonic()
    gone = f"dicomweb+http://127.0.0.1:{free_port()}/dicom-web"
    res = mura("predict", gone, "--study", studies[0], "--model", run, cwd=tmp_path, env=server.env)
    assert res.returncode == 5 and "cannot connect" in one_error_line(res)
    assert time.monotonic() - start < 15
    assert not list(tmp_path.glob("results*"))


@pytest.mark.slow
def test_a_failed_send_is_listed_per_object_and_keeps_the_local_copies(tmp_path):
    """STOW-RS to a server that is not there: every object is a named failure (errors CSV), exit 6, the DICOM
    results stay under --dicom-out, and the scores are written."""
    if not DICOM.is_dir():
        pytest.skip(f"real DICOMs not found at {DICOM}")
    run = save_tiny_run(tmp_path / "run")
    gone = f"dicomweb+http://127.0.0.1:{free_port()}/dicom-web"
    src = DICOM / UPLOADS[2]
    res = mura("localize", src, "--model", run, "--dicom-out", "d", "--send", gone, "--workers", "0", cwd=tmp_path)
    assert res.returncode == 6, res.stderr
    kept = sorted((tmp_path / "d").rglob("*.dcm"))
    assert [f.name[:2] for f in kept] == ["pr", "sc", "sr"]
    failures = list(csv.DictReader((tmp_path / "boxes.errors.csv").open()))
    assert sorted(f["path"] for f in failures) == sorted(str(f.relative_to(tmp_path)) for f in kept)
    assert all(f["stage"] == "send" and "cannot connect" in f["reason"] for f in failures)
    assert "stored (STOW-RS)" in res.stdout and "0 of 3" in res.stdout


def test_credentials_come_from_the_environment_only_and_tls_is_verified(monkeypatch):
    """A bearer token wins over basic credentials, goes only into the session's header, and no error line shows
    it; certificates are verified."""
    import requests

    from mura_cli.data.dicomweb import connect, network_error

    monkeypatch.setenv("MURA_DICOMWEB_TOKEN", "tok-123")
    monkeypatch.setenv("MURA_DICOMWEB_USER", "u")
    client = connect("dicomweb+https://pacs.example/dicom-web")
    session = client._session
    assert session.headers["Authorization"] == "Bearer tok-123" and session.auth is None
    assert session.verify is True
    response = requests.Response()
    response.status_code = 401
    line = str(network_error("dicomweb+https://pacs.example/dicom-web", requests.HTTPError(response=response)))
    assert "tok-123" not in line and "HTTP 401" in line and "MURA_DICOMWEB_TOKEN" in line
    monkeypatch.delenv("MURA_DICOMWEB_TOKEN")
    monkeypatch.setenv("MURA_DICOMWEB_PASSWORD", "pw")
    assert connect("dicomweb+https://pacs.example/dicom-web")._session.auth == ("u", "pw")


def test_a_wado_answer_is_the_first_part_of_its_multipart_message():
    from mura_cli.data.wado import first_part

    body = b"--b1\r\nContent-Type: application/dicom; transfer-syntax=*\r\n\r\n\x00DICM\r\n--b1--\r\n"
    assert first_part(body, 'multipart/related; type="application/dicom"; boundary="b1"') == b"\x00DICM"
    with pytest.raises(ValueError, match="not a multipart"):
        first_part(body, "application/dicom")
    with pytest.raises(ValueError, match="without a complete part"):
        first_part(body[:20], "multipart/related; boundary=b1")


@pytest.mark.slow
def test_benchmark_scores_studies_on_the_pacs_against_a_labels_csv(pacs, tmp_path):
    server, studies, run = pacs
    (tmp_path / "labels.csv").write_text(
        "study,label,part\n" + "".join(f"{s},{i % 2},wrist\n" for i, s in enumerate(studies))
    )
    common = ["--model", run, "--workers", "0", "--resamples", "50", "--json", "--overwrite"]
    res = mura("benchmark", "--data", server.address, "--labels", "labels.csv", *common, cwd=tmp_path, env=server.env)
    assert res.returncode == 0, res.stderr
    import json

    report = json.loads(res.stdout)["report"]
    assert report["data"]["kind"] == "dicomweb" and report["data"]["studies"] == 3 and report["data"]["images"] == 3
    res = mura("benchmark", "--data", server.address, *common, cwd=tmp_path, env=server.env)
    assert res.returncode == 2 and "--labels" in one_error_line(res)
    (tmp_path / "bad.csv").write_text(f"study,label\n{studies[0]},maybe\n")
    res = mura("benchmark", "--data", server.address, "--labels", "bad.csv", *common, cwd=tmp_path, env=server.env)
    assert res.returncode == 3 and "line 2" in one_error_line(res)


@pytest.mark.slow
def test_bearer_token_over_tls_with_a_private_ca(pacs, tmp_path):
    """Behind an HTTPS proxy that wants a bearer token (a self-signed certificate): the certificate is refused
    unless REQUESTS_CA_BUNDLE names it, a wrong token is one HTTP 401 line, the right one scores the study."""
    from orthanc_server import PASSWORD, USER
    from tls_proxy import TOKEN, BearerProxy

    server, studies, run = pacs
    proxy = BearerProxy(f"{server.rest}", (USER, PASSWORD), tmp_path).start()
    try:
        args = ["predict", proxy.address, "--study", studies[0], "--model", run, "--workers", "0"]
        res = mura(*args, cwd=tmp_path, env={"MURA_DICOMWEB_TOKEN": TOKEN})
        assert res.returncode == 5 and "TLS certificate not trusted" in one_error_line(res)
        trust = {"REQUESTS_CA_BUNDLE": str(proxy.cert)}
        res = mura(*args, cwd=tmp_path, env={**trust, "MURA_DICOMWEB_TOKEN": "wrong-token"})
        assert res.returncode == 5 and "HTTP 401" in one_error_line(res) and "wrong-token" not in res.stderr
        res = mura(*args, "--out", "r.csv", cwd=tmp_path, env={**trust, "MURA_DICOMWEB_TOKEN": TOKEN})
        assert res.returncode == 0, res.stderr
        assert [r["study"] for r in csv.DictReader((tmp_path / "r.csv").open())] == [studies[0]]
    finally:
        proxy.stop()
