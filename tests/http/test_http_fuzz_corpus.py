"""Replay the fuzz corpus (tests/fuzz/corpus/http_parser) through the fuzz target's checks.

Every kept input, the seeds and the regressions the fuzzer found
(``regress-*``), must pass the same checks ``make fuzz`` applies:
incremental equivalence, sane heads and bodies, typed errors.
"""
import os
import sys

import pytest

HERE = os.path.dirname(__file__)
sys.path.insert(0, os.path.join(HERE, "..", "fuzz"))
import fuzz_http_parser  # noqa: E402

CORPUS = os.path.join(HERE, "..", "fuzz", "corpus", "http_parser")
FILES = sorted(os.listdir(CORPUS))


def test_corpus_is_there():
    assert len(FILES) >= 50
    assert any(f.startswith("regress-") for f in FILES)


@pytest.mark.parametrize("name", FILES)
def test_replay(name):
    with open(os.path.join(CORPUS, name), "rb") as f:
        fuzz_http_parser.check(f.read())
