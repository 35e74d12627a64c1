"""What a directory is to conda, by conda's own marks."""

from __future__ import annotations

import os

import pytest

from conda_migrate_plugin.classify import Kind, classify, is_environment


@pytest.mark.parametrize(
    ("entries", "kind"),
    [
        (["conda-meta/history"], Kind.ENVIRONMENT),
        (["conda-meta/history", "urls.txt"], Kind.ENVIRONMENT),
        (["conda-meta/demo-1.0-0.json"], Kind.OTHER),  # history is the mark
        (["urls.txt"], Kind.PACKAGE_CACHE),
        (
            ["urls.txt", "urls", "demo-1.0-0.conda", "demo-1.0-0/info/index.json"],
            Kind.PACKAGE_CACHE,
        ),
        (["noarch/demo-1.0-0.conda", "noarch/repodata.json"], Kind.OTHER),  # a channel
        (["demo-1.0-0.tar.bz2"], Kind.OTHER),
        (["urls"], Kind.OTHER),
        ([], Kind.OTHER),
    ],
)
def test_the_walk_and_a_lookup_classify_alike(tmp_path, entries, kind):
    """A walk classifies from the names it listed, discovery by looking the
    marks up: the same answer either way."""
    for entry in entries:
        (tmp_path / entry).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / entry).touch()
    assert classify(tmp_path) is kind
    assert classify(tmp_path, os.listdir(tmp_path)) is kind
    assert classify(str(tmp_path)) is kind
    assert is_environment(tmp_path) == (kind is Kind.ENVIRONMENT)


def test_a_history_that_is_a_directory_makes_no_environment(tmp_path):
    (tmp_path / "conda-meta" / "history").mkdir(parents=True)
    assert classify(tmp_path) is Kind.OTHER
