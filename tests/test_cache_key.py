"""The result cache's key against the answers it stands for, on the real directory sample (PostgreSQL).

The property: inputs that share a cache key get the same answer. Inputs are generated from directory
records in the shapes that share their words and differ in what they carry — a name alone; with its own
code in several spellings; with a failed check digit; with another bank's code; with the code of another
branch of the same bank; beside an account number — at two ``top_k``. Every answer is computed uncached
by the one query path, and every pair of inputs is compared through their keys.
"""

from __future__ import annotations

import random
from collections import defaultdict

from serve_app.directory.codes import check_digit
from serve_app.query.inputs import read_inputs
from serve_app.query.pipeline import build_pipeline, compute_answer
from serve_app.schemas import QueryRequest, QueryResult
from serve_app.service.result_cache import ResultCache

#: A record's own code as statement lines write it.
OWN_CODE = (
    "{name}（{code}）",
    "{name}({code})",
    "{name} 联行号：{code}",
    "{name}，行号{code}",
    "{name} CNAPS:{code}",
    "{code} {name}",
    "{name} {wide}",
)
_WIDE = str.maketrans("0123456789", "０１２３４５６７８９")


def _answer_only(result: QueryResult) -> str:
    """Everything of an answer but the echoed query and the timings."""
    return result.model_dump_json(exclude={"query", "timings_ms"})


def _bad_check_digit(code: str) -> str:
    return code[:-1] + str((check_digit(code[:-1]) + 1) % 10)


async def test_inputs_that_share_a_cache_key_get_the_same_answer(sample_pool) -> None:
    pipeline = await build_pipeline(sample_pool)
    rows = await sample_pool.fetch("SELECT code, name, bank_name, branch FROM branches ORDER BY code")
    rng = random.Random(24)
    cases: list[tuple[str, str]] = []  # (kind, text)
    for record in rng.sample(list(rows), 25):
        code = record["code"]
        same_bank = [
            r["code"] for r in rows if r["bank_name"] == record["bank_name"] and r["branch"] != record["branch"]
        ]
        other_bank = [r["code"] for r in rows if r["bank_name"] != record["bank_name"]]
        account = "".join(rng.choice("0123456789") for _ in range(12))
        for name in (record["name"], record["bank_name"] + record["branch"]):
            cases.append(("name", name))
            cases += [("own_code", form.format(name=name, code=code, wide=code.translate(_WIDE))) for form in OWN_CODE]
            cases.append(("bad_check_digit", f"{name}（{_bad_check_digit(code)}）"))
            cases.append(("other_bank_code", f"{name}（{rng.choice(other_bank)}）"))
            if same_bank:
                cases.append(("same_bank_other_code", f"{name}（联行号：{rng.choice(same_bank)}）"))
            cases.append(("account_number", f"账号：{account} 开户行：{name}"))

    cache = ResultCache(None, ttl_s=60, local_size=0)
    answers_by_key: dict[str, set[str]] = defaultdict(set)
    reasons_by_kind: dict[str, set[str]] = defaultdict(set)
    for kind, text in cases:
        for top_k in (1, 5):
            inputs = read_inputs(QueryRequest(query=text, top_k=top_k), None, data_version=None)
            result = await compute_answer(pipeline.extraction.extract_entities, pipeline.repository, inputs, text, {})
            answers_by_key[cache.key(inputs)].add(_answer_only(result))
            reasons_by_kind[kind].add(result.reason)

    shared = {key: answers for key, answers in answers_by_key.items() if len(answers) > 1}
    assert not shared, f"{len(shared)} keys stand for different answers, e.g. {next(iter(shared.values()))}"
    # The generated inputs do share keys (spellings of one input), and do deserve different answers.
    assert len(answers_by_key) < 2 * len(cases)
    assert reasons_by_kind["bad_check_digit"] == {"invalid_code"}
    assert reasons_by_kind["other_bank_code"] == {"code_conflict"}
    assert reasons_by_kind["same_bank_other_code"] == {"code_conflict"}
    assert "code_lookup" in reasons_by_kind["own_code"]
    assert not reasons_by_kind["account_number"] & {"code_lookup", "code_conflict", "invalid_code"}
