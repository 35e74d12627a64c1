"""Paths as a site spells them: ``$SCRATCH`` a symlink to the parallel
filesystem (``/scratch/u`` to ``/gpfs/scratch/u``), and the user's rc files
naming an environment by one spelling while the run is given the other.
Whatever the spelling, the next login must find the environment where it is
now, and conda must stop creating environments in the directory emptied."""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import TYPE_CHECKING

import pytest

from tests.support.trees import tree_snapshot

if TYPE_CHECKING:
    from pathlib import Path


def symlinked_scratch(tmp_path: Path) -> tuple[Path, Path]:
    """The real place on the parallel filesystem, and ``$SCRATCH``, a link to it."""
    real = tmp_path / "gpfs" / "scratch" / "u"
    real.mkdir(parents=True)
    link = tmp_path / "scratch"
    link.symlink_to(real)
    return real, link


@pytest.mark.parametrize(
    ("rc_spelling", "given"),
    [("real", "link"), ("link", "real"), ("$SCRATCH", "real")],
    ids=["rc-real-run-link", "rc-link-run-real", "rc-variable-run-real"],
)
def test_rc_files_naming_the_other_spelling_follow_the_environment(
    make_env, migrate, home, tmp_path, monkeypatch, rc_spelling, given
):
    real, link = symlinked_scratch(tmp_path)
    monkeypatch.setenv("SCRATCH", str(link))
    spelled = {"real": real, "link": link, "$SCRATCH": "$SCRATCH"}
    make_env(real / "conda-envs" / "abc", ["demo-text"])
    named = f"{spelled[rc_spelling]}/conda-envs"
    bashrc, condarc = home / ".bashrc", home / ".condarc"
    bashrc.write_text(f"# login\nconda activate {named}/abc  # mine\n")
    condarc.write_text(f"envs_dirs:\n  - {named}  # big envs\n")

    out, err, code = migrate(
        "-d", f"{spelled[given]}/conda-envs", "--all", "--no-clean"
    )

    assert code == 0, out + err
    assert (home / ".conda/envs/abc/conda-meta/demo-text-1.0-0.json").is_file()
    dest = "$HOME/.conda/envs" if rc_spelling == "$SCRATCH" else home / ".conda/envs"
    assert not (real / "conda-envs" / "abc").exists()
    assert bashrc.read_text() == f"# login\nconda activate {dest}/abc  # mine\n"
    assert condarc.read_text() == f"envs_dirs:\n  - {dest}  # big envs\n"
    assert f"Updated {bashrc} (backup: " in out
    assert f"Updated {condarc} (backup: " in out


def test_rc_files_naming_a_symlink_to_the_environment_follow_it(
    make_env, migrate, home, tmp_path, monkeypatch
):
    """``analysis -> analysis-2024`` beside it, the name the user activates:
    the run lists the link as no environment of its own and moves the one it
    leads to, so the login that activated the link must activate the copy."""
    scanned = tmp_path / "scratch" / "conda-envs"
    monkeypatch.setenv("SCRATCH", str(scanned.parent))
    make_env(scanned / "analysis-2024", ["demo-text"])
    (scanned / "analysis").symlink_to("analysis-2024")
    bashrc = home / ".bashrc"
    bashrc.write_text(
        "conda activate $SCRATCH/conda-envs/analysis\n"
        f"export DATA={scanned}/analysis/share/demo\n"
    )

    out, err, code = migrate("-d", scanned, "--all", "--no-clean")

    assert code == 0, out + err
    assert "INVALID ENV: analysis (a symlink" in out
    dest = home / ".conda/envs/analysis-2024"
    assert (dest / "conda-meta/demo-text-1.0-0.json").is_file()
    assert bashrc.read_text() == (
        "conda activate $HOME/.conda/envs/analysis-2024\n"
        f"export DATA={dest}/share/demo\n"
    )
    # The link itself, no environment, is left as it was.
    assert os.readlink(scanned / "analysis") == "analysis-2024"


@pytest.mark.skipif(not shutil.which("bash"), reason="needs bash to read the lines")
def test_a_name_with_a_space_is_rewritten_as_the_shell_reads_it(
    make_env, migrate, home, tmp_path, monkeypatch
):
    """``my env``: conda 26 refuses to create one, older conda and other
    installers did not. A line the shell reads as its path must read as the
    new one, however the space was quoted or escaped."""
    scanned = tmp_path / "scratch" / "conda-envs"
    monkeypatch.setenv("SCRATCH", str(scanned.parent))
    make_env(scanned / "my env", ["demo-text"])
    bashrc = home / ".bashrc"
    bashrc.write_text(
        'conda activate "$SCRATCH/conda-envs/my env"\n'
        "conda activate $SCRATCH/conda-envs/my\\ env\n"
        f"conda activate {scanned}/my\\ env\n"
        f"conda activate {scanned}/'my env'\n"
    )

    out, err, code = migrate("-d", scanned, "--all", "--no-clean")

    assert code == 0, out + err
    dest = home / ".conda/envs/my env"
    assert (dest / "conda-meta/demo-text-1.0-0.json").is_file()
    read = subprocess.run(
        ["bash", "-c", 'conda() { printf "%s|%s\\n" "$@"; }; . "$HOME/.bashrc"'],
        env={"HOME": str(home), "SCRATCH": str(scanned.parent)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert read.stdout == f"activate|{dest}\n" * 4
    assert bashrc.read_text() == (
        'conda activate "$HOME/.conda/envs/my env"\n'
        "conda activate $HOME/.conda/envs/my\\ env\n"
        f"conda activate {home}/.conda/envs/my\\ env\n"
        f"conda activate {home}/.conda/envs/my\\ env''\n"
    )


@pytest.mark.parametrize("how", ["-d", "known"])
def test_a_link_in_home_to_scratch_is_one_more_name_for_it(
    make_env, migrate, home, tmp_path, monkeypatch, how
):
    """``~/scratch -> /gpfs/scratch/u``, the link users make to reach it:
    rc files name the environment through it, conda knows it by both paths
    (created by one, found in ``envs_dirs`` by the other), and it is one
    environment, migrated once, whose every name follows it."""
    real = tmp_path / "gpfs" / "scratch" / "u"
    env = make_env(real / "conda-envs" / "abc", ["demo-text"])
    (home / "scratch").symlink_to(real)
    monkeypatch.setenv("SCRATCH", str(real))
    (home / ".conda").mkdir(exist_ok=True)
    (home / ".conda/environments.txt").write_text(
        f"{env}\n{home}/scratch/conda-envs/abc\n"
    )
    bashrc, condarc = home / ".bashrc", home / ".condarc"
    bashrc.write_text("conda activate ~/scratch/conda-envs/abc\n")
    condarc.write_text("envs_dirs:\n  - ~/scratch/conda-envs\n")

    args = ["-d", real / "conda-envs"] if how == "-d" else []
    out, err, code = migrate(*args, "--all", "--no-clean")

    assert code == 0, out + err
    assert out.count("Valid Env: abc\n") == 1
    assert "Successfully migrated and removed old environment" in out
    dest = home / ".conda/envs/abc"
    assert (dest / "conda-meta/demo-text-1.0-0.json").is_file()
    assert not env.exists()
    assert bashrc.read_text() == "conda activate ~/.conda/envs/abc\n"
    assert condarc.read_text() == "envs_dirs:\n  - ~/.conda/envs\n"


@pytest.mark.parametrize("select", ["-p", "-n", "-d"])
def test_a_symlink_to_an_environment_elsewhere_names_where_it_leads(
    make_env, migrate, home, tmp_path, monkeypatch, select
):
    """``conda-envs/proj -> /group/envs/proj``: a group's environment, or one
    moved elsewhere with a link left behind. The run never removes through a
    link; it names what the link leads to, which the user may migrate by that
    path."""
    scanned = tmp_path / "scratch" / "conda-envs"
    scanned.mkdir(parents=True)
    monkeypatch.setenv("SCRATCH", str(scanned.parent))
    target = make_env(tmp_path / "group" / "envs" / "proj", ["demo-text"])
    link = scanned / "proj"
    link.symlink_to(target)
    (home / ".conda").mkdir(exist_ok=True)
    (home / ".conda/environments.txt").write_text(f"{link}\n")
    before = tree_snapshot(target)

    arg = {"-p": link, "-n": "proj", "-d": scanned}[select]
    out, err, code = migrate(select, arg, "--all", "--no-clean")

    assert code == 1, out + err
    said = out + err
    assert f"a symlink to {target}" in said
    if select != "-d":
        assert f"conda migrate -p {target}" in said
        assert "Pass -d with a directory" not in said
    assert tree_snapshot(target) == before
    assert os.readlink(link) == str(target)
    assert not (home / ".conda/envs/proj").exists()


def test_rc_files_naming_a_link_elsewhere_follow_the_environment_it_leads_to(
    make_env, migrate, home, tmp_path, monkeypatch
):
    """The command the refusal above gives: the environment is migrated by
    its own path, and the login that activated it through the link left on
    scratch (now leading nowhere) activates the copy."""
    scanned = tmp_path / "scratch" / "conda-envs"
    scanned.mkdir(parents=True)
    monkeypatch.setenv("SCRATCH", str(scanned.parent))
    target = make_env(tmp_path / "project" / "envs" / "proj", ["demo-text"])
    (scanned / "proj").symlink_to(target)
    bashrc = home / ".bashrc"
    bashrc.write_text(
        f"conda activate {scanned}/proj\nsource $SCRATCH/conda-envs/proj/etc/x.sh\n"
    )

    out, err, code = migrate("-p", target, "--all", "--no-clean")

    assert code == 0, out + err
    assert not target.exists()
    dest = home / ".conda/envs/proj"
    assert (dest / "conda-meta/demo-text-1.0-0.json").is_file()
    assert bashrc.read_text() == (
        f"conda activate {dest}\nsource $HOME/.conda/envs/proj/etc/x.sh\n"
    )


@pytest.mark.parametrize("dry_run", [False, True], ids=["run", "dry-run"])
def test_a_link_beside_the_environment_is_made_again_beside_the_copy(
    make_env, migrate, home, tmp_path, monkeypatch, dry_run
):
    """``analysis -> analysis-2024`` in a directory of ``envs_dirs`` is a
    name conda activates (``conda activate analysis``) and lists: the copy
    gets it beside it, or that name stops working after the run."""
    scanned = tmp_path / "scratch" / "conda-envs"
    monkeypatch.setenv("SCRATCH", str(scanned.parent))
    make_env(scanned / "analysis-2024", ["demo-text"])
    (scanned / "analysis").symlink_to("analysis-2024")
    (home / ".condarc").write_text(f"envs_dirs:\n  - {scanned}\n")

    extra = ["--dry-run"] if dry_run else []
    out, err, code = migrate("-d", scanned, "--all", "--no-clean", *extra)

    assert code == 0, out + err
    envs = home / ".conda/envs"
    verb = "Would link" if dry_run else "Linked"
    said = f"{verb} {envs}/analysis -> analysis-2024, as {scanned}/analysis led to it"
    assert said in out
    if dry_run:
        assert not envs.exists()
        return
    assert os.readlink(envs / "analysis") == "analysis-2024"
    hello = subprocess.run(
        [envs / "analysis/bin/demo-hello"], capture_output=True, text=True
    )
    assert hello.stdout == f"hello from {envs}/analysis-2024\n"
    # The old link is left as it was, leading nowhere now.
    assert os.readlink(scanned / "analysis") == "analysis-2024"


def test_a_link_beside_the_copy_never_replaces_anything(
    make_env, migrate, home, tmp_path, monkeypatch
):
    scanned = tmp_path / "scratch" / "conda-envs"
    monkeypatch.setenv("SCRATCH", str(scanned.parent))
    make_env(scanned / "analysis-2024", ["demo-text"])
    (scanned / "analysis").symlink_to("analysis-2024")
    mine = home / ".conda/envs/analysis"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("mine\n")

    out, err, code = migrate("-d", scanned, "--all", "--no-clean")

    assert code == 0, out + err
    assert (mine / "notes.txt").read_text() == "mine\n"
    assert f"{mine} is not made a link to analysis-2024: it exists" in out
