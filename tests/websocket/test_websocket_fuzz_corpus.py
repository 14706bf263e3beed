"""Replay the WebSocket fuzz corpus (tests/fuzz/corpus/wsframe) through the
fuzz target's checks: incremental equivalence, typed errors with the right
close codes, sane events, round trip, masking."""
import os
import sys

import pytest

HERE = os.path.dirname(__file__)
sys.path.insert(0, os.path.join(HERE, "..", "fuzz"))
import fuzz_wsframe  # noqa: E402

CORPUS = os.path.join(HERE, "..", "fuzz", "corpus", "wsframe")
FILES = sorted(os.listdir(CORPUS))


def test_corpus_is_there():
    assert len(FILES) >= 30


@pytest.mark.parametrize("name", FILES)
def test_replay(name):
    with open(os.path.join(CORPUS, name), "rb") as f:
        fuzz_wsframe.check(f.read())


def test_short_inputs_are_ignored():
    fuzz_wsframe.check(b"")
    fuzz_wsframe.check(b"\x01")
