"""Training examples: built from the training half only, labelled with the records' own fields."""

from __future__ import annotations

import pytest

from serve_app.directory.records import demo_cnaps_path, read_cnaps
from serve_app.models.task import FORMATS
from serve_app.training.examples import TENANT_STYLES, build_examples, is_training_record


@pytest.fixture(scope="module")
def records():
    return list(read_cnaps(demo_cnaps_path()))


@pytest.mark.parametrize("tenant", sorted(TENANT_STYLES))
def test_examples_cover_every_style_with_ground_truth_labels(records, tenant: str) -> None:
    by_code = {record.code: record for record in records}
    training = [record for record in records if is_training_record(record.code)]
    examples = build_examples(training, TENANT_STYLES[tenant], 200, seed=3)
    assert len(examples) == 200 and {e.style for e in examples} == set(TENANT_STYLES[tenant])
    for example in examples:
        record = by_code[example.code]
        assert is_training_record(record.code)
        assert example.answer == {k: v for k, v in {"bank": record.bank_name, "city": record.city,
                                  "district": record.district, "branch": record.branch}.items() if v}  # fmt: skip
        for answer_format in FORMATS.values():  # written and read back the same in every format
            read = answer_format.read(answer_format.write(example.answer)).entities
            assert read is not None and read.model_dump(include=set(example.answer)) == example.answer
    assert build_examples(training, TENANT_STYLES[tenant], 200, seed=3) == examples  # deterministic


def test_english_lines_name_the_bank_in_english(records) -> None:
    examples = build_examples(records, TENANT_STYLES["english"], 60, seed=1)
    english = [e for e in examples if e.style == "english_bank"]
    assert english and all(any(c.isascii() and c.isalpha() for c in e.query) for e in english)
    assert sum("BANK" in e.query for e in english) >= len(english) // 2


def test_the_two_halves_are_disjoint_and_both_large(records) -> None:
    training = sum(is_training_record(record.code) for record in records)
    assert 0.4 < training / len(records) < 0.6
