"""Noise operators that turn official branch names into what people type, with the answers that stay right.

Each operator takes a directory record and a random generator and returns the noisy query, or None when
it does not apply to that record. Each also has an ``information`` function: the part of a record the
query still carries. Every record with the same information as the gold record is an equally right
answer (dropping the city from "中国工商银行北京新华支行" leaves every ICBC 新华支行 right).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass

import opencc

from serve_app.directory.gazetteer import Gazetteer, stem
from serve_app.directory.institutions import registered_english_names
from serve_app.normalize import normalize

Record = dict  # code, name, bank_name, search_name, branch, province, city, district

_S2T = opencc.OpenCC("s2t")
_LEVEL = re.compile(r"(分行营业部|营业部|营业室|分理处|储蓄所|营业所|信用社|支行|分行)$")
_LOCAL_FORMS = (("农村商业银行", "农商银行"), ("农村信用合作联社", "农村信用社"), ("农村合作银行", "农合行"))
_ENGLISH_PREFIXES = ("THE PEOPLE'S BANK OF CHINA ", "PEOPLE'S BANK OF CHINA ", "The Peoples Bank of China ")
_FULLWIDTH = {chr(c): chr(c + 0xFEE0) for c in range(0x21, 0x7F)}


#: The short names people write for banks, as the ``alias`` operator writes them. Frozen (the rules' table as
#: it stood at stop 38): the rules' table grows, and an operator that drew from it would change the queries
#: it evaluates, and the random draws of every operator after it, with each alias added.
_PEOPLES_ALIASES = {
    "中国工商银行": ("工商银行", "工行"), "中国农业银行": ("农业银行", "农行"), "中国银行": ("中行",),
    "中国建设银行": ("建设银行", "建行"), "中国农业发展银行": ("农业发展银行", "农发行"), "交通银行": ("交行",),
    "中信银行": ("中信",), "中国光大银行": ("光大银行", "光大"), "华夏银行": ("华夏",),
    "中国民生银行": ("民生银行", "民生"), "招商银行": ("招行",), "兴业银行": ("兴业",),
    "上海浦东发展银行": ("浦发银行", "浦发"), "恒丰银行": ("恒丰",), "浙商银行": ("浙商",), "渤海银行": ("渤海",),
    "中国邮政储蓄银行": ("邮政储蓄银行", "邮储银行", "邮储"), "中国人民银行": ("人民银行",),
    "江苏常熟农村商业银行": ("常熟银行",), "江苏张家港农村商业银行": ("张家港行",),
    "江苏江阴农村商业银行": ("江阴银行",),
    "无锡农村商业银行": ("无锡银行",), "江苏苏州农村商业银行": ("苏农银行",), "江苏紫金农村商业银行": ("紫金银行",),
    "浙江绍兴瑞丰农村商业银行": ("瑞丰银行",), "上海农村商业银行": ("沪农商行",), "重庆农村商业银行": ("渝农商行",),
    "青岛农村商业银行": ("青农商行",), "深圳前海微众银行": ("微众银行",), "武汉众邦银行": ("众邦银行",),
    "中信百信银行": ("百信银行",), "广发银行": ("广发", "广东发展银行"), "平安银行": ("平安", "深圳发展银行"),
}  # fmt: skip


def _place_names(record: Record) -> list[str]:
    names = []
    for value in (record["province"], record["city"], record["district"]):
        if value:
            names += [value, stem(value)]
            names += [r.short for r in Gazetteer.default().named(value)]
    return sorted({n for n in names if len(n) >= 2}, key=len, reverse=True)


def _strip_places(text: str, record: Record) -> str:
    for name in _place_names(record):
        text = text.replace(name, "")
    return text


def clean(record: Record, rng: random.Random) -> str | None:
    return record["name"]


def alias(record: Record, rng: random.Random) -> str | None:
    bank = record["bank_name"]
    choices = list(_PEOPLES_ALIASES.get(bank, ()))
    for long, short in _LOCAL_FORMS:
        if bank.endswith(long):
            choices.append(bank[: -len(long)] + short)
    if not choices:
        return None
    return rng.choice(choices) + record["branch"]


def drop_location(record: Record, rng: random.Random) -> str | None:
    """Drop province/city/district names; only where a name is left (南康支行 minus 南康 says nothing)."""
    stripped = _strip_places(record["branch"], record)
    if stripped == record["branch"] or len(_LEVEL.sub("", stripped)) < 2:
        return None
    return record["bank_name"] + stripped


def ocr_spaces(record: Record, rng: random.Random) -> str | None:
    chars = list(record["name"])
    for _ in range(rng.randint(1, 3)):
        chars.insert(rng.randrange(1, len(chars)), " ")
    return "".join(chars)


def english_prefix(record: Record, rng: random.Random) -> str | None:
    return rng.choice(_ENGLISH_PREFIXES) + record["name"]


def traditional(record: Record, rng: random.Random) -> str | None:
    converted = _S2T.convert(record["name"])
    return converted if converted != record["name"] else None


def fullwidth(record: Record, rng: random.Random) -> str | None:
    annotation = rng.choice(("(不对外营业)", "(原营业网点)", ""))
    return (record["name"] + annotation).translate(str.maketrans(_FULLWIDTH)).replace(" ", "\u3000")


def truncation(record: Record, rng: random.Random) -> str | None:
    branch = record["branch"]
    if len(branch) < 4:
        return None
    keep = rng.randint(2, len(branch) - 2)
    return record["bank_name"] + branch[:keep]


def suffix_variant(record: Record, rng: random.Random) -> str | None:
    branch = record["branch"]
    level = _LEVEL.search(branch)
    if not level or len(branch) - len(level.group(1)) < 2:
        return None
    body = branch[: level.start()]
    variant = {"营业部": "营业室", "营业室": "营业部", "分理处": "分理"}.get(level.group(1), "")
    return record["bank_name"] + body + variant


def _same_text(record: Record) -> str:
    return record["search_name"]


def _without_places(record: Record) -> tuple:
    return (record["bank_name"], _strip_places(record["branch"], record))


def _without_level(record: Record) -> tuple:
    return (record["bank_name"], _LEVEL.sub("", record["branch"]))


@dataclass(frozen=True)
class Operator:
    name: str
    apply: Callable[[Record, random.Random], str | None]
    #: The record's information the query keeps; None when the query keeps the exact name.
    information: Callable[[Record], object] = _same_text
    #: For truncation: a prefix test instead of equality.
    prefix: bool = False


OPERATORS = (
    Operator("clean", clean),
    Operator("alias", alias),
    Operator("drop_location", drop_location, _without_places),
    Operator("ocr_spaces", ocr_spaces),
    Operator("english_prefix", english_prefix),
    Operator("traditional", traditional),
    Operator("fullwidth", fullwidth),
    Operator("truncation", truncation, prefix=True),
    Operator("suffix_variant", suffix_variant, _without_level),
)


def right_answers(operator: Operator, gold: Record, query: str, records: list[Record], index: dict) -> set[str]:
    """Codes of every record that the query fits as well as the gold one."""
    if operator.prefix:
        text = normalize(query)
        return {r["code"] for r in index["by_bank"][gold["bank_name"]] if r["search_name"].startswith(text)}
    key = operator.information(gold)
    return {r["code"] for r in index[operator.name].get(key, [])} | {gold["code"]}


def build_index(records: list[Record], operators: tuple[Operator, ...] = OPERATORS) -> dict:
    index: dict = {"by_bank": {}}
    for record in records:
        index["by_bank"].setdefault(record["bank_name"], []).append(record)
    for operator in operators:
        if operator.prefix:
            continue
        groups: dict = {}
        for record in records:
            groups.setdefault(operator.information(record), []).append(record)
        index[operator.name] = groups
    return index


# --- operators added for the verdict evaluation (benchmarks/eval_verdict.py) -----------------------------

#: Natural questions. The fit split and the evaluation split use different phrasings, so the evaluation
#: measures questions the calibration never saw. {bank}, {branch}, {body} (the branch without its level)
#: and {level} are filled from the record.
QUESTION_TEMPLATES = {
    # The rules' question words (serve_app/extraction/question.py) were written against all of these, so
    # they are fit data: the calibration may see them, the evaluation does not.
    "fit": (
        "请问{bank}{branch}的联行号是什么",
        "{bank}{branch}的行号",
        "帮我查一下{bank}{branch}",
        "{bank}{branch}的联行号是多少？",
        "请帮我查一下{bank}在{body}那个{level}的联行号",
        "你好，{bank}{branch}的大额行号是多少呢",
        "麻烦查询一下{bank}{branch}的银行代码",
        "{bank}的{branch}联行号是什么？",
    ),
    # Written once, after the rules, and never read while changing them.
    "eval": (
        "想确认下{bank}{branch}的支付行号",
        "{bank}{branch}，联行号多少",
        "查{bank}{body}{level}开户行行号",
        "{bank}{branch}对应的清算行号是？",
    ),
}
_STATEMENT_PREFIXES = ("收款行：", "对方开户行:", "开户银行 ", "THE PEOPLE'S BANK OF CHINA ", "付款行名称：")


def natural_question(split: str) -> Callable[[Record, random.Random], str | None]:
    templates = QUESTION_TEMPLATES[split]

    def apply(record: Record, rng: random.Random) -> str | None:
        level = _LEVEL.search(record["branch"])
        if not level or len(record["branch"]) - len(level.group(1)) < 2:
            return None
        body = record["branch"][: level.start()]
        values = {"bank": record["bank_name"], "branch": record["branch"], "body": body, "level": level.group(1)}
        return rng.choice(templates).format(**values)

    return apply


def statement_line(record: Record, rng: random.Random) -> str | None:
    """How statement exports print the counterparty bank: a label, the official name, OCR spaces."""
    chars = list(record["name"])
    chars.insert(rng.randrange(1, len(chars)), " ")
    return rng.choice(_STATEMENT_PREFIXES) + "".join(chars)


def statement_truncation(record: Record, rng: random.Random) -> str | None:
    """The official name cut where statement exports cut the counterparty bank field: at 40 or 60 GBK
    bytes (a character never split), or at 20 or 24 characters. None where the cut leaves it whole."""
    name = record["name"]
    limit = rng.choice((("bytes", 40), ("bytes", 60), ("chars", 20), ("chars", 24)))
    if limit[0] == "chars":
        cut = name[: limit[1]]
    else:
        cut = name.encode("gbk", errors="replace")[: limit[1]].decode("gbk", errors="ignore")
    return cut if len(cut) < len(name) else None


#: Payees of statement rows: a business named after its place (another city's), then its trade and form.
_PAYEE_TRADES = ("商贸", "建材", "科技", "物流", "五金", "餐饮", "电子", "农资", "服装", "汽车服务")
_PAYEE_FORMS = ("有限公司", "有限责任公司", "股份有限公司", "商行", "经营部", "厂", "店", "")
_ROW_SUMMARIES = ("转账", "货款", "网银跨行汇款", "往来款", "代发工资", "")


def statement_row(record: Record, rng: random.Random) -> str | None:
    """A whole row of a statement export as a clerk pastes it: the date, what was done, the payee (a business
    named after a city that is not the branch's, or a person), its account, the bank's official name and the
    amount, in an export's order; cells joined by tabs (a spreadsheet's row) or by spaces (a PDF's line)."""
    cities = [r for r in Gazetteer.default().regions if r.level == "city" and r.name != record["city"]]
    place = rng.choice(cities)
    payee = rng.choice(
        (
            rng.choice((place.name, place.short or place.name)) + rng.choice(_PAYEE_TRADES) + rng.choice(_PAYEE_FORMS),
            rng.choice("王李张刘陈杨赵黄周吴") + rng.choice(("伟", "芳", "建国", "秀英", "志强")),
        )
    )
    account = "".join(rng.choice("0123456789") for _ in range(rng.choice((16, 19))))
    date = rng.choice(("2026-11-%02d", "2026/11/%02d", "2026年11月%d日", "202611%02d")) % rng.randint(1, 28)
    amount = rng.choice(("%d.00", "%d,000.00", "￥%d.50", "%d元")) % rng.randint(1, 999)
    cells = [date, rng.choice(_ROW_SUMMARIES), payee, account, record["name"], amount]
    if rng.random() < 0.5:  # some exports print the bank before the account holder
        cells[2], cells[4] = cells[4], cells[2]
    return rng.choice(("\t", " ", "  ")).join(cell for cell in cells if cell)


def _bank_and_branch(record: Record) -> tuple:
    return (record["bank_name"], record["branch"])


# Two classes of real statement lines (issue 25), on the evaluation half only. Written once, before the
# rules for them, and never to be read while changing the rules.

#: Words that name a kind of local institution, not which one.
_INSTITUTION_KINDS = ("农村商业银行", "农村信用合作联社", "农村合作银行", "村镇银行")
#: Banks with province-level branches: the state-owned, policy and joint-stock banks and the postal bank.
_NATIONAL_CATEGORIES = re.compile(r"^(1\d\d|2\d\d|30\d|310|403)$")


def _kind_of(record: Record) -> str | None:
    return next((kind for kind in _INSTITUTION_KINDS if record["bank_name"].endswith(kind)), None)


def institution_kind(record: Record, rng: random.Random) -> str | None:
    """A local bank written only as its kind, then the branch (农村商业银行城关支行): which one is unknown."""
    kind = _kind_of(record)
    if kind is None or not _LEVEL.search(record["branch"]) or len(record["branch"]) < 4:
        return None
    return kind + record["branch"]


def _kind_and_branch(record: Record) -> tuple:
    return (_kind_of(record), record["branch"])


def province_level(record: Record, rng: random.Random) -> str | None:
    """A city's branch written under the province-level branch, as some statements print it:
    中国建设银行四川省分行成都武侯支行. National banks only, outside the municipalities."""
    branch, city, province = record["branch"], record["city"], record["province"]
    if not _NATIONAL_CATEGORIES.match(record["bank_code"]) or city == province or not _LEVEL.search(branch):
        return None
    if not branch.startswith(stem(city)) or "省" not in province:
        return None
    return record["bank_name"] + rng.choice((province, stem(province))) + "分行" + branch


# Fit half only: a class the evaluation half also has, phrased otherwise, so the verdict model is fit on it.

#: How staff shorten a kind of local bank, so the verdict model sees branches found by a kind.
_SHORT_KINDS = {
    "农村商业银行": ("农商银行",),
    "农村信用合作联社": ("农村信用社", "信用合作联社", "农村信用联社"),
    "农村合作银行": ("农村合作银行",),
    "村镇银行": ("村镇银行",),
}


def kind_short(record: Record, rng: random.Random) -> str | None:
    """A local bank written as its kind, shortened, then the branch (农商银行城关支行)."""
    kind = _kind_of(record)
    if kind is None or not _LEVEL.search(record["branch"]):
        return None
    return rng.choice(_SHORT_KINDS[kind]) + record["branch"]


def verdict_operators(split: str) -> tuple[Operator, ...]:
    """The operators of the extraction evaluation plus natural questions (phrased per split) and statement
    lines; on the fit half also local banks written as a shortened kind; on the evaluation half names cut as
    statement exports cut them, local banks written only as their kind, and branches written under their
    province-level branch (evaluation only: nothing is fit on them)."""
    operators = (
        *OPERATORS,
        Operator("natural_question", natural_question(split), _bank_and_branch),
        Operator("statement_line", statement_line),
    )
    if split == "fit":
        operators += (Operator("kind_short", kind_short, _kind_and_branch),)
    if split == "eval":
        operators += (
            Operator("statement_truncation", statement_truncation, prefix=True),
            Operator("institution_kind", institution_kind, _kind_and_branch),
            Operator("province_level", province_level),
            Operator("statement_row", statement_row),
        )
    return operators


#: What a generic unit's name says once its places are set aside (清算中心, 营业部, 高新区支行 …): two
#: branches of one bank differ only by the place. An empty rest (浏阳支行 minus 浏阳) is one too.
GENERIC_UNITS = frozenset(
    {"", "清算中心", "资金清算中心", "现金清算中心", "营业部", "营业室", "营运管理部", "运营管理部", "票据中心",
     "本部", "会计结算部", "高新区", "高新技术开发区", "高新技术产业开发区", "经济技术开发区", "经济开发区",
     "开发区", "新区", "城区", "城中", "城东", "城西", "城南", "城北"}
)  # fmt: skip


def generic_unit(record: Record) -> str | None:
    """The record's unit with its places set aside (分行清算中心, 支行, 高新区支行), if it is generic."""
    unit = _strip_places(record["branch"], record)
    core = _LEVEL.sub("", unit).replace("分行", "")
    return unit if core in GENERIC_UNITS else None


def place_swapped(record: Record, city: str) -> str | None:
    """The record's bank and branch written for another city: the branch's province dropped, its city and
    district names replaced by ``city``'s short name (中国农业银行 宿迁分行清算中心 → 中国农业银行衡阳分行清算中心).
    The bank's own name is left as it is (a local bank's name carries its home)."""
    branch = record["branch"]
    province = record["province"]
    for form in sorted({province, stem(province)}, key=len, reverse=True):
        branch = branch.replace(form, "")
    short = stem(city)
    for value in (record["district"], record["city"]):
        if not value:
            continue
        forms = {value, stem(value)} | {r.short for r in Gazetteer.default().named(value)}
        for form in sorted(forms, key=len, reverse=True):
            if len(form) >= 2 and form in branch:
                branch = branch.replace(form, short, 1)
                break
    return record["bank_name"] + branch if short in branch and branch != record["branch"] else None


# --- operator added for the model evaluation (benchmarks/eval_model.py) ----------------------------------

#: Cross-border statements naming the bank by its registered English name. Written differently from the
#: adapters' training style (``serve_app.training.examples``): other labels, other casing, other order.
_ENGLISH_LINES = (
    "RECEIVER: {english} {branch}",
    "Beneficiary's bank - {english}, {branch}",
    "{branch} ({english})",
    "A/C WITH {english} / {branch}",
)


def english_line(record: Record, rng: random.Random) -> str | None:
    english = registered_english_names().get(record["bank_name"])
    if english is None:
        return None
    english = rng.choice((english, english.lower(), english.title()))
    return rng.choice(_ENGLISH_LINES).format(english=english, branch=record["branch"])


#: Requests as staff type them into a chat or a ticket. Written after the rules' question words
#: (``serve_app/extraction/question.py``) and the adapters' training phrasings, and kept apart from both:
#: neither may be changed to fit these, or this stops measuring text nobody tuned for.
_UNSEEN_QUESTIONS = (
    "转账到{bank}{branch}，开户行行号要填什么",
    "{bank}{branch}这个网点的行号发我一下",
    "客户开户行是{bank}{branch}，帮忙核对下行号",
    "{bank}{branch}对公账户的行号",
    "请提供{bank}{branch}的清算行号，谢谢",
    "{bank}{branch}网点行号多少啊",
)


def unseen_question(record: Record, rng: random.Random) -> str | None:
    if not _LEVEL.search(record["branch"]):
        return None  # the bank's head office: no branch to ask about
    return rng.choice(_UNSEEN_QUESTIONS).format(bank=record["bank_name"], branch=record["branch"])


def model_operators() -> tuple[Operator, ...]:
    """The verdict evaluation's operators (eval-split questions) plus English lines and questions phrased
    as neither the rules nor the adapters were written for."""
    return (
        *verdict_operators("eval"),
        Operator("english_line", english_line, _bank_and_branch),
        Operator("unseen_question", unseen_question, _bank_and_branch),
    )
