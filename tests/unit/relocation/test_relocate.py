"""The relocate engine on real environments: what it copies, what it rewrites,
and that the copy runs at its new place."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conda_migrate_plugin.exceptions import RelocateError
from conda_migrate_plugin.jobs import default_jobs
from conda_migrate_plugin.relocation.relocate import relocate
from conda_migrate_plugin.relocation.verify import verify_files
from conda_migrate_plugin.snapshot import changes_since, measure
from tests.support.channel import PLACEHOLDER, SITE_PACKAGES
from tests.support.markers import requires_conda
from tests.support.runs import child_env
from tests.support.trees import tree_snapshot

OWNED_WITH_PREFIX = ("etc/demo/demo.conf", "bin/demo-hello", "bin/demo-app")


@pytest.fixture
def env(make_env, tmp_path) -> Path:
    return make_env(tmp_path / "scratch" / "envs" / "abc", pip=True)


def _final(tmp_path: Path, length: int) -> Path:
    """A destination whose path is exactly ``length`` characters long."""
    base = str(tmp_path / "h" / "e")
    assert len(base) <= length
    return Path(base + "x" * (length - len(base)))


def _staging(final: Path) -> Path:
    return final.with_name(final.name + ".partial")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _records(prefix: Path) -> dict[str, dict]:
    entries = {}
    for record in (prefix / "conda-meta").glob("*.json"):
        for entry in json.loads(record.read_text())["paths_data"]["paths"]:
            entries[entry["_path"]] = entry
    return entries


@pytest.mark.parametrize("delta", [-12, +20], ids=["shorter", "longer"])
def test_rewrites_prefixes_as_installing_there_would(env, make_env, tmp_path, delta):
    final = _final(tmp_path, len(str(env)) + delta)
    staging = _staging(final)
    result = relocate(env, staging, final)
    # The reference: the same packages installed directly at the new path.
    reference = make_env(final)
    for rel in [*OWNED_WITH_PREFIX, "lib/libdemo.so", "bin/python3.11"]:
        assert (staging / rel).read_bytes() == (reference / rel).read_bytes(), rel
    binary = (staging / "lib/libdemo.so").read_bytes()
    assert len(binary) == (env / "lib/libdemo.so").stat().st_size
    assert f"{final}/lib\x00".encode() in binary
    assert str(env).encode() not in binary
    assert {*OWNED_WITH_PREFIX, "lib/libdemo.so"} <= set(result.rewritten)
    # conda's own records agree with the new bytes.
    for rel, entry in _records(staging).items():
        if "prefix_placeholder" in entry:
            assert entry["sha256_in_prefix"] == _sha256(staging / rel), rel
    assert not verify_files(env, staging, final).problems


@pytest.mark.parametrize("name", ["x" * 60, "with space"])
def test_unusable_shebang_falls_back_to_env_as_conda_does(env, tmp_path, name):
    final = tmp_path / "h" / name
    staging = _staging(final)
    relocate(env, staging, final)
    script = (staging / "bin/demo-app").read_text()
    assert script.startswith("#!/usr/bin/env python\n")
    # Elsewhere in text files the prefix is substituted as it is.
    assert f"root = {final}\n" in (staging / "etc/demo/demo.conf").read_text()


def test_too_long_prefix_names_the_binary_file(env, tmp_path):
    final = _final(tmp_path, len(PLACEHOLDER) + 1)
    with pytest.raises(RelocateError, match="lib/libdemo.so") as info:
        relocate(env, _staging(final), final)
    assert "clone" in str(info.value)


def test_longest_prefix_that_fits(env, tmp_path):
    final = _final(tmp_path, len(PLACEHOLDER))
    relocate(env, _staging(final), final)
    binary = (_staging(final) / "lib/libdemo.so").read_bytes()
    assert f"{final}/lib\x00{final}/".encode() not in binary
    assert f"{final}/share/demo\x00tail".encode() in binary


def test_keeps_modes_times_hardlinks_and_symlinks(env, tmp_path):
    os.link(env / "share/demo/data.txt", env / "share/demo/data-again.txt")
    (env / "lib/abs-link").symlink_to(env / "lib/libdemo.so")
    (env / "lib/outside-link").symlink_to("/usr/bin/env")
    os.utime(env / "share/demo/data.txt", ns=(1_000_000_000, 2_000_000_000))
    final = tmp_path / "home" / "abc"
    staging = _staging(final)
    relocate(env, staging, final)
    a, b = staging / "share/demo/data.txt", staging / "share/demo/data-again.txt"
    assert a.stat().st_ino == b.stat().st_ino
    assert a.stat().st_mtime_ns == 2_000_000_000
    assert os.readlink(staging / "lib/abs-link") == f"{final}/lib/libdemo.so"
    assert os.readlink(staging / "lib/outside-link") == "/usr/bin/env"
    assert os.readlink(staging / "bin/python") == "python3.11"
    assert os.readlink(staging / "share/demo/current.txt") == "data.txt"
    assert os.access(staging / "bin/demo-hello", os.X_OK)
    for rel in ("conda-meta", "etc/demo", "bin/demo-hello"):
        assert (staging / rel).stat().st_mode == (env / rel).stat().st_mode, rel
        assert (staging / rel).stat().st_mtime_ns == (env / rel).stat().st_mtime_ns
    assert (staging / "etc/demo").stat().st_mtime_ns == (
        env / "etc/demo"
    ).stat().st_mtime_ns


def test_unowned_files_follow_the_move(env, tmp_path):
    blob = env / "lib/unowned.bin"
    blob.write_bytes(b"\x00\x01" + f"{env}/lib".encode() + b"\x00\xff")
    final = tmp_path / "home" / "abc"
    staging = _staging(final)
    result = relocate(env, staging, final)
    site = staging / SITE_PACKAGES
    assert (
        (staging / "bin/extra-tool").read_text().startswith(f"#!{final}/bin/python\n")
    )
    assert (site / "extra_tool.pth").read_text() == f"{final}/src\n"
    direct_url = json.loads(
        (site / "extra_tool-0.3.dist-info/direct_url.json").read_text()
    )
    assert direct_url["url"] == f"file://{final}/src/extra_tool"
    assert "bin/extra-tool" in result.rewritten
    # A binary nobody describes is not touched, but reported.
    assert (staging / "lib/unowned.bin").read_bytes() == blob.read_bytes()
    assert any("lib/unowned.bin" in w for w in result.warnings)
    assert "lib/unowned.bin" not in result.rewritten


def test_sibling_environment_names_are_not_rewritten(env, tmp_path):
    (env / "etc/siblings.txt").write_text(f"{env}2/bin\n{env}-dev\n{env}/bin\n")
    final = tmp_path / "home" / "abc"
    relocate(env, _staging(final), final)
    text = (_staging(final) / "etc/siblings.txt").read_text()
    assert text == f"{env}2/bin\n{env}-dev\n{final}/bin\n"


def test_carries_what_clone_drops(env, tmp_path):
    meta = env / "conda-meta"
    (meta / "pinned").write_text("demo-text 1.0\n")
    (meta / "state").write_text(
        json.dumps({"env_vars": {"DEMO_HOME": f"{env}/share/demo", "LEVEL": "3"}})
    )
    (env / ".condarc").write_text("channels:\n  - conda-forge\n")
    (meta / "history").write_text(
        f"==> 2024-01-01 00:00:00 <==\n# cmd: conda create -p {env}\n+demo-text-1.0-0\n"
    )
    final = tmp_path / "home" / "abc"
    staging = _staging(final)
    relocate(env, staging, final)
    assert (staging / "conda-meta/pinned").read_text() == "demo-text 1.0\n"
    state = json.loads((staging / "conda-meta/state").read_text())
    assert state["env_vars"] == {"DEMO_HOME": f"{final}/share/demo", "LEVEL": "3"}
    assert (staging / ".condarc").read_text() == "channels:\n  - conda-forge\n"
    history = (staging / "conda-meta/history").read_text().splitlines()
    assert history[:3] == (meta / "history").read_text().splitlines()
    assert history[3].startswith(f"# conda-migrate: relocated from {env} to {final}")
    assert len(history) == 4


def test_the_copy_runs_at_its_new_place(env, tmp_path):
    final = tmp_path / "home" / "envs" / "abc"
    staging = _staging(final)
    relocate(env, staging, final, jobs=2)
    staging.rename(final)
    run = {
        name: subprocess.run(
            [final / "bin" / name], capture_output=True, text=True, check=True
        ).stdout
        for name in ("demo-app", "extra-tool", "demo-hello")
    }
    assert run == {
        "demo-app": "demo-app works\n",
        "extra-tool": "extra-tool works\n",
        "demo-hello": f"hello from {final}\n",
    }


def test_source_is_left_untouched(env, tmp_path):
    before = tree_snapshot(env)
    final = tmp_path / "home" / "abc"
    relocate(env, _staging(final), final)
    assert tree_snapshot(env) == before


def test_counts_files_and_bytes(env, tmp_path):
    final = tmp_path / "home" / "abc"
    result = relocate(env, _staging(final), final)
    files = [p for p in env.rglob("*") if p.is_file() and not p.is_symlink()]
    assert result.files == len(files)
    assert result.bytes == sum(p.stat().st_size for p in files)


def test_refuses_an_existing_staging_dir(env, tmp_path):
    staging = tmp_path / "home" / "abc.partial"
    staging.mkdir(parents=True)
    (staging / "mine.txt").write_text("not the run's\n")
    with pytest.raises(RelocateError, match="already exists"):
        relocate(env, staging, tmp_path / "home" / "abc")


def test_skips_fifos_with_a_warning(env, tmp_path):
    os.mkfifo(env / "etc/a-fifo")
    final = tmp_path / "home" / "abc"
    result = relocate(env, _staging(final), final)
    assert not os.path.lexists(_staging(final) / "etc/a-fifo")
    assert any("etc/a-fifo" in w for w in result.warnings)


def test_unreadable_file_is_named(env, tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root reads every file")
    (env / "etc/secret").write_text("x")
    (env / "etc/secret").chmod(0)
    final = tmp_path / "home" / "abc"
    with pytest.raises(RelocateError, match="etc/secret"):
        relocate(env, _staging(final), final)


def test_default_jobs_follows_cpu_affinity():
    assert default_jobs() == min(32, 8 * len(os.sched_getaffinity(0)))


def test_relocation_given_no_progress_prints_nothing(env, tmp_path, capfd):
    final = tmp_path / "home" / "abc"
    relocate(env, _staging(final), final)
    assert capfd.readouterr() == ("", "")


_MEMORY_PROBE = textwrap.dedent(
    """
    import resource, sys
    from pathlib import Path
    from conda_migrate_plugin.relocation.relocate import relocate
    from conda_migrate_plugin.relocation.verify import verify_files
    source, staging, final = map(Path, sys.argv[1:])
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    relocate(source, staging, final)
    check = verify_files(source, staging, final)
    assert not check.problems, check.problems
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
    """
)


def test_memory_stays_flat_with_a_large_file(env, tmp_path):
    big = env / "share/big.dat"
    with big.open("wb") as fh:
        fh.truncate(200 * 2**20)
        for at in range(0, 200 * 2**20, 7 * 2**20):
            fh.seek(at)
            fh.write(os.urandom(4096) + f"near {env}/lib ".encode())
    final = tmp_path / "home" / "abc"
    out = subprocess.run(
        [sys.executable, "-c", _MEMORY_PROBE, env, _staging(final), final],
        capture_output=True,
        text=True,
        check=True,
        env=child_env(),
    )
    growth_kib = int(out.stdout)
    assert growth_kib < 40 * 1024
    assert (_staging(final) / "share/big.dat").stat().st_size == 200 * 2**20


@requires_conda
def test_same_bytes_as_conda_clone(make_env, tmp_path, home):
    from conda.base.context import reset_context
    from conda.misc import clone_env

    reset_context()
    source = make_env(tmp_path / "scratch" / "envs" / "abc", pip=True)
    cloned = tmp_path / "clone" / "abc"
    clone_env(str(source), str(cloned), verbose=False, quiet=True)
    # Relocated for the same final path, so both name the same prefix.
    staging = tmp_path / "relocated" / "abc"
    relocate(source, staging, cloned)
    records = _records(source)
    assert records
    for rel, entry in records.items():
        if entry["path_type"] == "softlink":
            assert os.readlink(staging / rel) == os.readlink(cloned / rel), rel
        else:
            assert (staging / rel).read_bytes() == (cloned / rel).read_bytes(), rel
    # What conda records about the files it rewrote matches too.
    cloned_records = _records(cloned)
    for rel, entry in _records(staging).items():
        if "prefix_placeholder" in entry:
            assert entry["sha256_in_prefix"] == cloned_records[rel]["sha256_in_prefix"]
    # And the clone passes the same verification, apart from what it drops.
    check = verify_files(source, cloned, cloned)
    assert not check.problems, check.problems


@pytest.mark.parametrize(("length", "trampoline"), [(126, False), (127, True)])
def test_python_scripts_get_the_sh_trampoline_where_conda_and_pip_write_it(
    tmp_path, length, trampoline
):
    """conda's entry points and pip's console scripts count the newline in
    the kernel's 127: a longer line, or a space, gets the trampoline."""
    from conda_migrate_plugin.relocation.prefix import PrefixRewrite

    new = "/h/" + "p" * (length - len("#!/h/") - len("/bin/python3.11"))
    rewrite = PrefixRewrite("/old", new)
    script = b"#!/old/bin/python3.11\nimport sys\n"
    for launcher in (False, True):
        out = b"".join(rewrite.text_chunks([script], launcher=launcher))
        first = out.split(b"\n")[0]
        if launcher and trampoline:
            assert out == (
                b"#!/bin/sh\n'''exec' \"%s/bin/python3.11\" \"$0\" \"$@\" #'''\n"
                b"import sys\n" % new.encode()
            )
        else:
            assert first == f"#!{new}/bin/python3.11".encode()
            assert len(first) == length


def test_sh_trampoline_runs_the_script_with_its_python(tmp_path):
    from conda_migrate_plugin.relocation.prefix import PrefixRewrite

    new = tmp_path / "with space"
    (new / "bin").mkdir(parents=True)
    (new / "bin/python3").symlink_to(sys.executable)
    script = new / "bin/tool"
    rewritten = PrefixRewrite("/old", str(new)).text_chunks(
        [b"#!/old/bin/python3\nimport sys\nprint(sys.argv[1:])\n"], launcher=True
    )
    script.write_bytes(b"".join(rewritten))
    script.chmod(0o755)
    done = subprocess.run(
        [script, "a b", "c"],
        capture_output=True,
        text=True,
        env={"PATH": "/nonexistent"},
    )
    assert done.stdout == "['a b', 'c']\n", done.stderr


# -- checked as it is written: one walk, one read -------------------------------


def test_a_package_file_edited_in_place_is_copied_and_noted(env, tmp_path):
    """The same size, other bytes: only the record's hash tells; the copy
    holds what the user has, and the log says so."""
    data = env / "share/demo/data.txt"
    edited = data.read_bytes().upper()
    data.unlink()  # break the hardlink into the package cache before editing
    data.write_bytes(edited)
    final = tmp_path / "home" / "abc"
    result = relocate(env, _staging(final), final)
    assert result.problems == []
    assert (_staging(final) / "share/demo/data.txt").read_bytes() == edited
    assert any(
        n.startswith("share/demo/data.txt: the source already differs from its record")
        for n in result.notes
    )


def test_text_still_naming_the_old_prefix_is_a_problem(env, tmp_path):
    """Latin-1 text no package describes is not rewritten (it is not UTF-8);
    a copy that would still point into the old environment must not replace it."""
    notes = env / "etc/notes.txt"
    notes.write_bytes(f"caf\xe9 in {env}/share\n".encode("latin-1"))
    final = tmp_path / "home" / "abc"
    result = relocate(env, _staging(final), final)
    assert result.problems == [f"etc/notes.txt: still names the old prefix {env}"]


def test_a_listed_file_that_is_a_directory_is_a_problem(env, tmp_path):
    conf = env / "etc/demo/demo.conf"
    conf.unlink()
    conf.mkdir()
    final = tmp_path / "home" / "abc"
    result = relocate(env, _staging(final), final)
    assert "etc/demo/demo.conf: a directory in the copy, conda lists a file" in (
        result.problems
    )


def test_copies_what_the_preflight_walk_saw(env, tmp_path):
    """The source is walked once: a file made after the walk is not in the
    copy, and the comparison of stamps that follows names it."""
    footprint = measure(env)
    (env / "share/late.txt").write_text("made after the walk\n")
    final = tmp_path / "home" / "abc"
    relocate(env, _staging(final), final, listing=footprint.listing)
    assert not os.path.lexists(_staging(final) / "share/late.txt")
    assert (_staging(final) / "share/demo/data.txt").is_file()
    assert "share/late.txt: added" in changes_since(footprint.stamps, env)


def test_a_directory_the_listing_does_not_reach_fails_the_copy(env, tmp_path):
    """Directories are made, and their entries queued, from their parent's
    listing down: entries under a directory no parent lists are not left
    out of the copy in silence."""
    footprint = measure(env)
    footprint.listing["etc"] = [
        (rel, st) for rel, st in footprint.listing["etc"] if rel != "etc/demo"
    ]
    final = tmp_path / "home" / "abc"
    with pytest.raises(RelocateError, match="etc/demo: not reached from"):
        relocate(env, _staging(final), final, listing=footprint.listing)


def test_a_directory_swapped_for_a_symlink_is_not_followed(env, tmp_path):
    """Swapped after the walk for a link to elsewhere: the copy stops rather
    than take in what the link points at."""
    footprint = measure(env)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "demo.conf").write_text("not the environment's\n")
    shutil.rmtree(env / "etc/demo")
    (env / "etc/demo").symlink_to(outside)
    final = tmp_path / "home" / "abc"
    with pytest.raises(RelocateError, match="cannot read etc/demo"):
        relocate(env, _staging(final), final, listing=footprint.listing)
    assert not os.path.lexists(_staging(final) / "etc/demo/demo.conf")


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_modes_are_the_sources_whatever_the_umask(env, tmp_path, umask):
    """Directories and files are made with the source's mode where the
    umask lets them and changed after where it does not: the copy's modes
    match."""
    read_only = env / "etc/read-only.txt"
    read_only.write_text("read only\n")
    read_only.chmod(0o444)
    for name, mode in (("setuid-tool", 0o4755), ("others-only", 0o604)):
        (env / "bin" / name).write_text("#!/bin/sh\n")
        (env / "bin" / name).chmod(mode)
    shared = env / "share/shared"
    shared.mkdir()
    shared.chmod(0o2775)
    (env / "share/private").mkdir(mode=0o700)
    (env / "share/private").chmod(0o700)
    final = tmp_path / "home" / "abc"
    old = os.umask(umask)
    try:
        relocate(env, _staging(final), final)
    finally:
        os.umask(old)
    paths = [env, *env.rglob("*")]
    for path in paths:
        if path.is_symlink():
            continue
        copy = _staging(final) / path.relative_to(env)
        assert copy.stat().st_mode == path.stat().st_mode, path


def test_a_set_group_id_destination_leaves_the_sources_modes(env, tmp_path):
    """Directories made below a set-group-ID directory inherit the bit:
    the copy's directories still end with their source's mode."""
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o2775)
    final = home / "abc"
    relocate(env, _staging(final), final)
    for path in [env, *env.rglob("*")]:
        copy = _staging(final) / path.relative_to(env)
        assert copy.lstat().st_mode == path.lstat().st_mode, path
