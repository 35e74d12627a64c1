"""conda's environments.txt as kept without conda."""

from __future__ import annotations

from pathlib import Path

from conda_migrate_plugin.backends.registry import (
    environments_txt,
    read_registry,
    register,
    unregister,
)


def test_register_appends_once_and_unregister_keeps_the_others(tmp_path):
    environments_txt(tmp_path).parent.mkdir()
    environments_txt(tmp_path).write_text("/opt/conda\n\n/scratch/u/envs/abc\n")
    register(Path("/home/u/.conda/envs/abc"), tmp_path)
    register(Path("/home/u/.conda/envs/abc"), tmp_path)
    unregister(Path("/scratch/u/envs/abc"), tmp_path)
    assert environments_txt(tmp_path).read_text() == (
        "/opt/conda\n/home/u/.conda/envs/abc\n"
    )
    assert read_registry(tmp_path) == [
        Path("/opt/conda"),
        Path("/home/u/.conda/envs/abc"),
    ]


def test_a_missing_registry_is_empty_and_made_on_register(tmp_path):
    assert read_registry(tmp_path) == []
    unregister(Path("/x"), tmp_path)
    assert not environments_txt(tmp_path).exists()
    register(Path("/x"), tmp_path)
    assert environments_txt(tmp_path).read_text() == "/x\n"
