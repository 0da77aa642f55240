"""A real Orthanc PACS (Debian packages ``orthanc`` and ``orthanc-dicomweb``) for the tests: started on 127.0.0.1 on
a free port with a temporary storage folder, HTTP basic authentication and the DICOMweb plugin; stopped after."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import requests

PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
USER, PASSWORD = "mura", "not-a-real-secret"


def missing() -> str | None:
    """Why Orthanc cannot run here, or ``None``."""
    if not shutil.which("Orthanc"):
        return "Orthanc not installed (Debian package orthanc; .ci/run installs it)"
    if not PLUGIN.exists():
        return f"the Orthanc DICOMweb plugin is missing ({PLUGIN}; Debian package orthanc-dicomweb)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Orthanc:
    folder: Path
    port: int
    process: subprocess.Popen | None = None

    @property
    def rest(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        """The ``dicomweb+http://`` address mura takes."""
        return f"dicomweb+{self.rest}/dicom-web"

    @property
    def env(self) -> dict[str, str]:
        return {"MURA_DICOMWEB_USER": USER, "MURA_DICOMWEB_PASSWORD": PASSWORD}

    def start(self) -> Orthanc:
        config = {
            "Name": "mura-test",
            "StorageDirectory": str(self.folder / "storage"),
            "IndexDirectory": str(self.folder / "storage"),
            "HttpPort": self.port,
            "RemoteAccessAllowed": False,  # loopback only
            "AuthenticationEnabled": True,
            "RegisteredUsers": {USER: PASSWORD},
            "DicomServerEnabled": False,
            "Plugins": [str(PLUGIN)],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        }
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "orthanc.json").write_text(json.dumps(config))
        log = open(self.folder / "orthanc.log", "ab")  # noqa: SIM115 (closed with the process)
        self.process = subprocess.Popen(["Orthanc", str(self.folder / "orthanc.json")], stdout=log, stderr=log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.rest}/system", auth=(USER, PASSWORD), timeout=1).ok:
                    return self
            except requests.ConnectionError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"Orthanc did not start: {(self.folder / 'orthanc.log').read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def upload(self, path: Path) -> dict:
        r = requests.post(f"{self.rest}/instances", data=path.read_bytes(), auth=(USER, PASSWORD), timeout=30)
        r.raise_for_status()
        return r.json()

    def qido(self, path: str) -> list[dict]:
        r = requests.get(f"{self.rest}/dicom-web/{path}", auth=(USER, PASSWORD), timeout=30)
        r.raise_for_status()
        return r.json() if r.content else []

    def instance_file(self, study: str, sop: str) -> bytes:
        """The stored file of the instance ``sop`` (Orthanc's REST API)."""
        auth = (USER, PASSWORD)
        found = requests.post(
            f"{self.rest}/tools/find",
            json={"Level": "Instance", "Query": {"StudyInstanceUID": study, "SOPInstanceUID": sop}},
            auth=auth,
            timeout=30,
        ).json()
        assert len(found) == 1, (study, sop, found)
        return requests.get(f"{self.rest}/instances/{found[0]}/file", auth=auth, timeout=30).content
