"""Statement exports shaped the way Chinese banks export them, built here (nothing binary is committed):
title lines above the header, merged title cells, GBK / UTF-8 with a BOM / UTF-16 text, XLSX with real
dates and amounts, totals, fees and interest without a counterparty bank, print times and page footers.

Each shape is ``(name, filename, bytes, transactions, not_transactions)``: the rows a clerk expects to be
answered, and the ones that must come back ``skipped``.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from datetime import datetime

import openpyxl

SEED = "华夏银行江油西山支行"
#: Counterparty banks as statements print them (a branch, a short form, an official name, one absent).
BANKS = [SEED, "工行徐州经济开发区支行", "中国农业银行股份有限公司萧县支行营业部", "火星银行奥林匹斯山支行"]
HEADER = ["交易日期", "摘要", "对方户名", "对方账号", "对方开户行", "借方发生额", "贷方发生额", "余额"]
TITLE = [["中国工商银行 对公账户交易明细查询"], ["账户名称：某某贸易有限公司"], ["账号：1102020109000012345"],
         ["起止日期：2025-11-01 至 2025-11-30"]]  # fmt: skip


@dataclass(frozen=True)
class Shape:
    name: str
    filename: str
    data: bytes
    transactions: int
    not_transactions: int


def _rows(header: list[str] = HEADER) -> tuple[list[list[str]], int, int]:
    """Transactions (one per bank, twice), then a fee and an interest line (no counterparty bank), a total,
    a print time: (rows as text, transactions, the rest)."""
    rows = []
    for n, bank in enumerate(BANKS * 2):
        rows.append([f"2025-11-{n + 3:02d}", "货款", f"客户{n}", f"62220210{n:011d}", bank, f"{100 * n + 0.5:.2f}",
                     "", f"{10_000 - n:.2f}"])  # fmt: skip
    rows.append(["2025-11-20", "手续费", "", "", "", "12.00", "", "9980.00"])
    rows.append(["2025-11-21", "结息", "", "", "", "", "3.21", "9983.21"])
    rows.append(["合计", "", "", "", "", "2812.00", "3.21", ""])
    rows.append(["打印时间：2025-12-01 09:30:12", "", "", "", "", "", "", ""])
    return [row[: len(header)] for row in rows], len(BANKS) * 2, 4


def _csv(lines: list[list[str]], delimiter: str = ",") -> str:
    return "\n".join(delimiter.join(line) for line in lines) + "\n"


def _xlsx(title: list[list[str]], header: list[str], rows: list[list[str]], merged: bool) -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    for line in title:
        sheet.append(line)
    if merged and title:
        sheet.merge_cells(start_row=1, start_column=1, end_row=1, end_column=len(header))
    sheet.append(header)
    for row in rows:
        typed: list[object] = []
        for column, cell in zip(header, row, strict=True):
            if column == "交易日期" and cell[:2] == "20":
                typed.append(datetime.strptime(cell, "%Y-%m-%d"))
            elif column in ("借方发生额", "贷方发生额", "余额") and cell:
                typed.append(float(cell))
            else:
                typed.append(cell or None)
        sheet.append(typed)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def shapes() -> list[Shape]:
    rows, answered, rest = _rows()
    boc_header = [*HEADER[:4], "对方行名称", *HEADER[5:]]
    abc_header = [
        "交易时间",
        "交易摘要",
        "收款方户名",
        "收款方账号",
        "收款方开户行",
        "支出金额",
        "收入金额",
        "账户余额",
    ]
    footer_rows = [*rows[:-1], ["第1页 共1页", "", "", "", "", "", "", ""]]
    jsonl = "".join(
        json.dumps({"date": r[0], "counterparty": r[2], "收款行名称": r[4], "amount": r[5]}, ensure_ascii=False) + "\n"
        for r in rows[:answered]
    )
    return [
        Shape("ICBC CSV, GBK, title lines, total and print time", "工行对账单.csv",
              _csv([*TITLE, HEADER, *rows]).encode("gbk"), answered, rest),
        Shape("CCB XLSX, merged title, dates and amounts typed", "建行对账单.xlsx",
              _xlsx([["中国建设银行 账户交易明细"], ["账号：1100 1234 5678 0000 0001"]], HEADER, rows, merged=True),
              answered, rest),
        Shape("ABC CSV, UTF-8 with a BOM, 收款方 headers, no title", "农行明细.csv",
              ("\ufeff" + _csv([abc_header, *rows])).encode("utf-8"), answered, rest),
        Shape("Excel 'Unicode text' export: UTF-16 with a BOM, tabs, a title", "明细.txt",
              _csv([["账户交易明细"], HEADER, *rows], "\t").encode("utf-16"), answered, rest),
        Shape("BOC CSV, 对方行名称, page footer", "中行流水.csv",
              _csv([["中国银行 交易流水"], boc_header, *footer_rows]).encode("gbk"), answered, rest),
        Shape("XLSX without a title, amounts typed", "流水.xlsx", _xlsx([], HEADER, rows, merged=False),
              answered, rest),
        Shape("CSV with quoted amounts with thousands separators", "对账.csv",
              _csv([HEADER, *[[*r[:5], f'"{float(r[5] or 0) * 1000:,.2f}"', *r[6:]] for r in rows]]).encode("gbk"),
              answered, rest),
        Shape("JSON lines from a program, 收款行名称", "payments.jsonl", jsonl.encode(), answered, 0),
    ]  # fmt: skip
