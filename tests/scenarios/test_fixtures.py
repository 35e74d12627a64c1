"""The test environments are what conda would have made."""

from __future__ import annotations

import json
import subprocess

from tests.support.channel import PLACEHOLDER


def test_environments_are_real_installs(scratch):
    records = sorted(p.name for p in (scratch.abc / "conda-meta").glob("*.json"))
    assert records == [
        "demo-app-2.0-py311_0.json",
        "demo-binary-1.0-0.json",
        "demo-text-1.0-0.json",
        "python-3.11.0-0.json",
    ]
    assert (scratch.abc / "conda-meta" / "history").is_file()
    conf = (scratch.abc / "etc/demo/demo.conf").read_text()
    assert f"root = {scratch.abc}\n" in conf
    binary = (scratch.abc / "lib/libdemo.so").read_bytes()
    assert f"{scratch.abc}/lib\x00".encode() in binary
    assert PLACEHOLDER.encode() not in binary
    record = json.loads((scratch.abc / "conda-meta/demo-binary-1.0-0.json").read_text())
    (entry,) = record["paths_data"]["paths"]
    assert entry["file_mode"] == "binary"


def test_entry_points_run(scratch):
    out = subprocess.run(
        [scratch.abc / "bin/demo-app"], capture_output=True, text=True, check=True
    )
    assert out.stdout == "demo-app works\n"
