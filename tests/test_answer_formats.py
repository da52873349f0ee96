"""Answer formats: every directory record written and read back exactly, strict readers, and the version an
adapter folder names checked where adapters are validated (registration and load)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from serve_app.directory.records import demo_cnaps_path, read_cnaps
from serve_app.errors import AdapterInvalid
from serve_app.models.adapters import validate_adapter
from serve_app.models.demo import DemoModel
from serve_app.models.task import ANSWER_FIELDS, FORMAT_FILE, FORMATS, CompactFormat, format_of, mark_format
from serve_app.training.examples import answer_of
from tests.test_models import adapter_root, demo  # noqa: F401 - the shared model fixtures

COMPACT = CompactFormat()


def _read_back(answer_format, answer: dict[str, str]) -> dict[str, str]:
    entities = answer_format.read(answer_format.write(answer)).entities
    assert entities is not None
    return entities.model_dump(include=set(ANSWER_FIELDS), exclude_none=True)


@pytest.mark.parametrize("version", sorted(FORMATS))
def test_every_directory_record_reads_back_exactly(version: int) -> None:
    answer_format = FORMATS[version]
    for record in read_cnaps(demo_cnaps_path()):
        answer = answer_of(record)
        assert _read_back(answer_format, answer) == answer, answer_format.write(answer)


_value = st.text(st.characters(blacklist_characters="|\n\r", blacklist_categories=("Cs",)), max_size=12)


@given(st.fixed_dictionaries({name: _value for name in ANSWER_FIELDS}))
def test_compact_answers_read_back_exactly_whatever_the_text(fields: dict[str, str]) -> None:
    # Endings, place references and escapes are the writer's choices; the reader must undo each of them.
    answer = {name: value for name, value in fields.items() if value.strip() == value and value}
    assert _read_back(COMPACT, answer) == answer


@pytest.mark.parametrize(
    ("answer", "written"),
    [
        (
            {"bank": "华夏银行", "city": "绵阳市", "district": "江油市", "branch": "江油西山支行"},
            "华夏|绵阳|江油市|^西山",
        ),
        ({"bank": "中国工商银行", "city": "北京市", "branch": "北京新华支行"}, "中国工商|北京||~新华"),
        ({"bank": "平安银行", "city": "郑州市", "branch": "郑州建设路支行"}, "平安|郑州||~建设路"),
        ({"bank": "兴业银行", "city": "漳州市", "branch": "漳州分行清算中心"}, "兴业|漳州||~分行清算中心"),
        (
            {"bank": "农村信用合作联社", "city": "延边朝鲜族自治州", "branch": "营业部"},
            "农村信用合作联社|延边朝鲜族自治州||营业部",
        ),
        (
            {"bank": "中国工商银行", "city": "省直辖行政区划", "branch": "石河子百大城支行"},
            "中国工商|省直辖行政区划||石河子百大城",
        ),
        ({"bank": "华夏银行", "city": "北京市", "branch": "北京中关村"}, "华夏|北京||~=中关村"),  # a name cut short
    ],
)
def test_compact_answers_leave_out_what_the_reader_restores(answer: dict[str, str], written: str) -> None:
    assert COMPACT.write(answer) == written
    assert _read_back(COMPACT, answer) == answer


@pytest.mark.parametrize(
    ("text", "finished", "reason"),
    [
        ("华夏|绵阳||西", False, "cut short"),
        ('{"bank":"华夏银行"}', True, "expected 4 fields"),
        ("华夏|绵阳|江油", True, "expected 4 fields"),
        ("华夏|绵阳||西山|支行", True, "expected 4 fields"),
        ("华夏|||~西山", True, "no city"),
        ("华夏|绵阳||^西山", True, "no district"),
        ("华夏|绵阳||" + "西" * 45, True, "longer than 40"),
    ],
)
def test_compact_answers_that_break_the_format_are_reported(text: str, finished: bool, reason: str) -> None:
    answer = COMPACT.read(text, finished)
    assert not answer.valid and answer.entities is None and reason in answer.error
    assert answer.raw == text


def test_an_adapter_folder_names_its_format_and_an_unknown_one_is_refused(
    demo: DemoModel,  # noqa: F811
    adapter_root: Path,  # noqa: F811
) -> None:
    folder = adapter_root / "formats"
    shutil.copytree(demo.adapters["job_22"], folder, dirs_exist_ok=True)
    (folder / FORMAT_FILE).unlink(missing_ok=True)
    assert format_of(folder) is FORMATS[1]  # trained before formats were versioned
    assert validate_adapter("formats", "formats", adapter_root, demo.base).answer_format == 1
    mark_format(folder, FORMATS[2])
    assert validate_adapter("formats", "formats", adapter_root, demo.base).answer_format == 2
    (folder / FORMAT_FILE).write_text(json.dumps({"version": 9}))
    with pytest.raises(AdapterInvalid, match=r"answers in format 9, which this service cannot read \(it reads 1, 2\)"):
        validate_adapter("formats", "formats", adapter_root, demo.base)
    (folder / FORMAT_FILE).write_text("{not json")
    with pytest.raises(AdapterInvalid, match=r"unreadable answer_format\.json"):
        validate_adapter("formats", "formats", adapter_root, demo.base)


@pytest.mark.parametrize("version", sorted(FORMATS))
def test_training_writes_the_format_it_trained_for(demo: DemoModel, tmp_path: Path, version: int) -> None:  # noqa: F811
    from serve_app.training.examples import TENANT_STYLES, build_examples
    from serve_app.training.trainer import TrainingConfig, train_adapter

    examples = build_examples(list(read_cnaps(demo_cnaps_path()))[:50], TENANT_STYLES["statements"], 4, seed=0)
    output = tmp_path / "adapter"
    train_adapter(demo.base, output, examples, TrainingConfig(steps=1, batch_size=2, answer_format=version))
    assert format_of(output) is FORMATS[version]
