"""schemathesis, every check, against the real service on 127.0.0.1: the OpenAPI document tells the
truth (statuses, bodies, headers, the one-of constraints) and no request gets a 5xx. Bounded in
examples per operation and in wall time."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from styleaxis.index.service import ServiceConfig, create_app
from styleaxis.media.video import read_frames
from test_service import index_dir, running, wait_ready  # noqa: F401  (index_dir is a fixture)


# Schema-valid data that the service still refuses, for reasons a schema cannot carry: vector
# dimensions and model hashes depend on the index loaded, uploaded bytes are arbitrary, and ids are
# free strings (404). Everything else must be accepted (positive_data_acceptance).
CONFIG = """
[checks.positive_data_acceptance]
expected-statuses = ["2XX", "404", "413", "415", "422"]
"""


@pytest.mark.slow
def test_schemathesis_finds_no_failure(index_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    app = create_app(index_dir, frame_reader=read_frames, service_config=ServiceConfig(max_upload_bytes=1 << 20))
    with running(app) as http:
        wait_ready(http)
        command = [shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or "schemathesis",
                   "--config-file", str(config), "run", f"{http.base_url}/openapi.json", "--checks", "all",
                   "--max-examples", "30", "--seed", "19", "--workers", "1", "--max-time", "60",
                   "--request-timeout", "30", "--no-color", "--generation-database", "none"]
        done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)  # its cache too
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
