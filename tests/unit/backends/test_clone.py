"""What the clone engine does to conda's clone after it, without conda: the
copy conda's clone makes is played by a relocated copy, changed as conda's
clone leaves it."""

from __future__ import annotations

import os

from conda_migrate_plugin.backends.clone import carry_omitted
from conda_migrate_plugin.relocation.relocate import relocate
from conda_migrate_plugin.relocation.verify import verify_files


def test_carry_makes_a_relative_link_out_lead_where_it_led(make_env, tmp_path):
    """conda's clone copies a link no package owns with its target as it
    is: a relative one out of the environment then leads, from ``$HOME``,
    elsewhere (here nowhere). Carried, it leads where it led; one that
    dangled in the source stays as it was."""
    source = make_env(tmp_path / "scratch" / "envs" / "abc")
    data = tmp_path / "scratch" / "datasets" / "ref.fa"
    data.parent.mkdir()
    data.write_text(">chr1\n")
    (source / "share" / "ref.fa").symlink_to("../../../datasets/ref.fa")
    (source / "share" / "gone.fa").symlink_to("../../../datasets/gone.fa")
    dest = tmp_path / "home" / "envs" / "abc"
    relocate(source, dest, dest)
    for name in ("ref.fa", "gone.fa"):
        (dest / "share" / name).unlink()
        (dest / "share" / name).symlink_to(os.readlink(source / "share" / name))
    assert not (dest / "share" / "ref.fa").exists()
    assert [p.split(":")[0] for p in verify_files(source, dest, dest).problems] == [
        "share/ref.fa"
    ]

    carried = carry_omitted(source, dest)

    assert "share/ref.fa" in carried and "share/gone.fa" not in carried
    assert os.readlink(dest / "share" / "ref.fa") == os.path.realpath(data)
    assert os.readlink(dest / "share" / "gone.fa") == "../../../datasets/gone.fa"
    check = verify_files(source, dest, dest)
    assert check.problems == []
    assert check.notes == [
        (
            "share/ref.fa: its relative target ../../../datasets/ref.fa leaves the "
            f"environment; it now links to {os.path.realpath(data)}, where that led"
        )
    ]
