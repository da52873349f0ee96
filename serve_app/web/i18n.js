// The page's words, in 简体中文 (the default) and English: one table, read by index.html's data-i18n
// attributes and by app.js through t(). The API's codes (verdict, reason, evidence) stay in data-*
// attributes; what a clerk reads is said here, in plain words.
"use strict";

const MESSAGES = {
  zh: {
    "title": "银行网点查询 · serve-app",
    "heading": "银行网点（联行号）查询",
    "switch": "English",
    "key": "API 密钥",
    "key.placeholder": "仅在启用密钥时填写",
    "ask": "查询",
    "ask.placeholder": "华夏银行江油西山支行、一行对账单或一句问话…",
    "col.code": "联行号", "col.name": "网点全称", "col.city": "城市", "col.confidence": "置信度", "col.evidence": "依据",
    "successors": "此网点已从目录中撤销。以下是同一银行、同一城市可能承接其业务的网点——付款前请核实：",
    "code": "按行号查询", "code.placeholder": "12 位联行号（可含空格）", "code.button": "查询",
    "browse": "浏览目录", "browse.bank": "银行（可写“工行”）", "browse.province": "省份", "browse.city": "城市",
    "browse.q": "名称包含", "browse.button": "查找", "browse.prev": "‹ 上一页", "browse.next": "下一页 ›",
    "changes": "目录变更", "changes.hint": "最近几次加载目录的变化：撤销、恢复、更名、迁移和新增的行号。",
    "upload": "对账文件",
    "upload.hint": "CSV（UTF-8、GBK 或 UTF-16）、XLSX 或 JSON lines，带表头（表头上方的标题行无妨）；"
      + "开户行列按名称自动识别（对方行名、开户行、bank…），也可在此指定。",
    "upload.column": "列名（可选）", "upload.button": "上传", "recent": "最近的对账",
    "footer": "答案来自官方目录。可付款：付往此行号；需人工确认：请从候选中选择；目录中无此网点：目录里没有符合所写内容的网点。"
      + "置信度是经过校准的概率：在同类查询中，有这么大比例的候选确实是所指的网点。",
    "verdict.match": "可付款", "verdict.ambiguous": "需人工确认", "verdict.none": "目录中无此网点",
    "confidence": "置信度 {value}",
    "read_as": "按此文字查询：{text}",
    "reason.code_lookup": "按所写行号找到，其余文字与记录一致",
    "reason.unique_fit": "所读银行中只有一个网点符合，且把握足够",
    "reason.several_fit": "有多个网点同样符合，请选择",
    "reason.uncertain_fit": "最符合的网点把握不足（关键词不完整或未写网点）",
    "reason.not_payable": "符合的网点标注为不对外办理业务，不能作为收款行",
    "reason.bank_unknown": "未能读出银行：列出各银行的候选，请人工判断",
    "reason.bank_uncertain": "文字中写了两家银行",
    "reason.code_conflict": "行号有效，但旁边的文字指向另一家银行、另一地点或另一网点",
    "reason.bank_not_in_directory": "这是持牌机构，但目录中没有它的网点",
    "reason.no_branch_fits": "已查该银行的网点，没有符合所写网点名的",
    "reason.no_branch_in_place": "有同名网点，但不在所写的地点（仅列出供查看，不可选用）",
    "reason.no_branch_named": "只写了银行，没有写网点：没有可付款的网点",
    "reason.invalid_code": "12 位数字的校验位不对，不是有效的联行号",
    "reason.code_not_in_directory": "行号有效，但目录中没有",
    "reason.branch_retired": "所指网点已从目录中撤销",
    "reason.nothing_to_match": "没有可查询的内容",
    "review": "逐行确认",
    "review.hint": "系统不确定的行（需人工确认、目录中无此网点）由您决定一次：选择正确的网点或确认无此网点。"
      + "决定会写入结果文件，并作为本单位的确认：以后同样的文字直接给出您选择的行号。",
    "review.progress": "{file}：还有 {left} 行待确认，已决定 {decided} 行",
    "review.number": "第 {row} 行",
    "review.none": "0 · 目录中无此网点", "review.next": "下一行 →",
    "review.keys": "键盘：1–5 选择候选，0 目录中无此网点，N 跳到下一行。",
    "review.done": "本文件没有待确认的行了。结果文件已包含您的决定。",
    "confirmations": "本单位的确认",
    "confirmations.hint": "本单位人员确认过的文字及其行号；只影响本单位的答案。删除后，该文字重新按目录判断。",
    "confirmations.export": "导出全部确认（CSV）", "confirmations.none": "还没有确认",
    "confirmations.delete": "删除", "decided_none": "目录中无此网点",
    "reason.confirmed": "本单位人员已确认此文字对应的网点",
    "reason.confirmed_none": "本单位人员已确认：目录中无此网点",
    "confirmed_by": "由 {who} 于 {date} 确认",
    "confirmation.not_used": "本单位曾确认为 {code}，但该网点已{why}，此确认不再使用",
    "why.retired": "撤销", "why.changed": "更名或迁移", "why.not_in_directory": "不在目录中",
    "job.decided": " · 已人工决定 {decided}",
    "warming": "演示模型构建中，现按规则回答",
    "warming.training": "演示模型构建中（{adapter} 第 {step}/{steps} 步，约 {eta} 秒），现按规则回答",
    "training": "适配器训练",
    "training.hint": "用本单位已确认的文字和目录记录，训练适配器的新版本。新版本须在未参与训练的数据上不比现有版本和纯规则差"
      + "（正确付款不少、错误付款不多），才会启用；否则保留现有版本，并显示原因。",
    "training.adapter": "适配器名称（如 job_22）", "training.steps": "训练步数",
    "training.start": "用本单位的确认训练", "training.show": "查看训练记录",
    "training.none": "这个适配器还没有训练记录",
    "run.queued": "排队中", "run.running": "训练中", "run.registered": "已启用", "run.rejected": "未通过检验",
    "run.failed": "失败",
    "run.progress": "第 {step} / {steps} 步 · 损失 {loss} · 约剩 {eta} 秒",
    "run.revision": "新版本 {revision}",
    "run.measured": "{condition}：确认 {cr} 对 / {cw} 错 · 目录 {dr} 对 / {dw} 错",
    "condition.rules": "纯规则", "condition.current": "现有版本", "condition.candidate": "新版本",
    "evidence": "{part}：{how}", "part.bank": "银行", "part.city": "城市", "part.district": "区县", "part.branch": "网点",
    "how.exact": "一致", "how.prefix": "开头一致", "how.partial": "部分一致", "how.none": "不一致",
    "retired_on": "已撤销 {date}",
    "use": "使用此行号", "copied": "已复制 {code}",
    "as_of": "目录截至 {date} · {active} 个行号", "as_of.retired": " · {retired} 个已撤销",
    "changes.none": "首次加载以来没有变更",
    "kind.new": "新增", "kind.retired": "撤销", "kind.returned": "恢复", "kind.renamed": "更名", "kind.moved": "迁移",
    "kind.changed": "变更",
    "browse.total": "共 {total} 个网点", "browse.page": "，第 {page} 页",
    "state.queued": "排队中", "state.running": "处理中", "state.done": "完成",
    "job.header_line": " — 在第 {line} 行找到表头（上方 {above} 行为标题）",
    "job.progress": "{percent} %（{done} / {total} 行）",
    "job.counts": "可付款 {match} · 需人工确认 {ambiguous} · 目录中无此网点 {none} · 跳过 {skipped} · 错误 {error}",
    "job.eta": " · 约剩 {seconds} 秒",
    "error.unreadable_file": "无法读取此文件：", "error.too_many_rows": "文件行数超过上限：",
    "error.body_too_large": "文件太大：", "error.body_timeout": "上传太慢，请重试：",
    "error.quota_exceeded": "已达到上限，请等待或删除已完成的对账：",
    "error.rate_limited": "请求太频繁，请稍后再试：", "error.unauthorized": "请填写有效的 API 密钥：",
    "error.training_in_progress": "这个适配器正在训练，请等这次训练结束：",
    "error.forbidden": "这个 API 密钥不能使用此适配器：", "error.unknown_model": "没有这个适配器：",
    "error.no_model": "此服务没有模型，不能训练：",
    "error.invalid_code": "这不是有效的联行号（12 位数字，校验位须正确）：",
    "error.unknown_code": "目录中没有这个行号：", "error.retired_code": "这个行号已从目录中撤销：",
    "error.unavailable": "服务暂时不可用，请稍后再试：", "error.overloaded": "服务繁忙，请稍后再试：",
    "error.not_ready": "服务正在启动，请稍后再试：", "error.timeout": "服务响应超时，请重试：",
  },
  en: {
    "title": "Branch lookup · serve-app",
    "heading": "Bank-branch lookup",
    "switch": "中文",
    "key": "API key",
    "key.placeholder": "only with keys on",
    "ask": "Ask",
    "ask.placeholder": "华夏银行江油西山支行, a statement line, a question…",
    "col.code": "code", "col.name": "official name", "col.city": "city", "col.confidence": "confidence",
    "col.evidence": "evidence",
    "successors": "This branch has left the directory. Branches of the same bank and city that may have taken it "
      + "over — check before paying:",
    "code": "Look up a code", "code.placeholder": "12-digit CNAPS code (spaces are fine)", "code.button": "Look up",
    "browse": "Browse", "browse.bank": "bank (工行 works)", "browse.province": "province", "browse.city": "city",
    "browse.q": "name contains", "browse.button": "Find", "browse.prev": "‹ previous", "browse.next": "next ›",
    "changes": "Directory changes",
    "changes.hint": "What the latest loads changed: closed (retired), returned, renamed, moved and new codes.",
    "upload": "Reconcile a file",
    "upload.hint": "CSV (UTF-8, GBK or UTF-16), XLSX or JSON lines with a header (title lines above it are fine); "
      + "the bank column is found by name (对方行名, 开户行, bank…) or given here.",
    "upload.column": "column (optional)", "upload.button": "Upload", "recent": "Recent files",
    "footer": "Answers come from the official directory. Payable: pay to the code; Check by hand: choose among the "
      + "candidates; Not in the directory: nothing in the directory fits what was written. Confidence is a "
      + "calibrated probability: the share of such candidates that were the branch meant.",
    "verdict.match": "Payable", "verdict.ambiguous": "Check by hand", "verdict.none": "Not in the directory",
    "confidence": "confidence {value}",
    "read_as": "read as: {text}",
    "reason.code_lookup": "found by the code written; the words agree with its record",
    "reason.unique_fit": "one branch of the bank read fits, surely enough",
    "reason.several_fit": "several branches fit as well: choose one",
    "reason.uncertain_fit": "the best branch fits, but not surely enough (partial keyword, or no branch named)",
    "reason.not_payable": "the branch that fits is marked not open for business: never a payee",
    "reason.bank_unknown": "no bank was read: candidates of any bank, for a person",
    "reason.bank_uncertain": "the text names two banks",
    "reason.code_conflict": "the code is valid, but the words beside it name another bank, place or branch",
    "reason.bank_not_in_directory": "a licensed institution, but the directory holds none of its branches",
    "reason.no_branch_fits": "the bank's branches were searched; none fits the branch words",
    "reason.no_branch_in_place": "branches with these words exist, but not in the place written (shown, not offered)",
    "reason.no_branch_named": "only a bank is named: there is no branch to pay to",
    "reason.invalid_code": "a 12-digit number whose check digit is wrong",
    "reason.code_not_in_directory": "a valid code the directory does not hold",
    "reason.branch_retired": "the branch named has left the directory",
    "reason.nothing_to_match": "nothing to look up",
    "review": "Decide row by row",
    "review.hint": "Rows the service was unsure of (check by hand, not in the directory) are yours to decide once: "
      + "pick the right branch, or say there is none. Decisions go into the result files and are kept as your "
      + "organisation's confirmations: the same text is answered with your choice from then on.",
    "review.progress": "{file}: {left} rows left to decide, {decided} decided",
    "review.number": "row {row}",
    "review.none": "0 · not in the directory", "review.next": "next row →",
    "review.keys": "Keys: 1–5 pick a candidate, 0 not in the directory, N skip to the next row.",
    "review.done": "No rows of this file are left to decide. The result files carry your decisions.",
    "confirmations": "Your organisation's confirmations",
    "confirmations.hint": "Texts people of your organisation decided, and their codes; they change your answers "
      + "only. Deleted, a text is judged against the directory again.",
    "confirmations.export": "Export every confirmation (CSV)", "confirmations.none": "No confirmations yet",
    "confirmations.delete": "delete", "decided_none": "not in the directory",
    "reason.confirmed": "a person of your organisation confirmed this text's branch",
    "reason.confirmed_none": "a person of your organisation confirmed: no such branch in the directory",
    "confirmed_by": "confirmed by {who} on {date}",
    "confirmation.not_used": "confirmed before as {code}, but that branch was {why}: the confirmation is not used",
    "why.retired": "retired", "why.changed": "renamed or moved", "why.not_in_directory": "removed",
    "job.decided": " · {decided} decided",
    "warming": "the demo model is being built; answering from the rules",
    "warming.training": "the demo model is being built ({adapter} step {step}/{steps}, about {eta} s); answering from the rules",
    "training": "Adapter training",
    "training.hint": "Train a new revision of an adapter on your organisation's confirmed texts and directory records. "
      + "It serves only if, on data it never trained on, it is no worse than the revision serving now and than the "
      + "rules alone (no fewer right matches, no more wrong ones); otherwise the current revision stays, and the "
      + "run says why.",
    "training.adapter": "adapter name (e.g. job_22)", "training.steps": "training steps",
    "training.start": "Train on our confirmations", "training.show": "Show runs",
    "training.none": "No training runs of this adapter yet",
    "run.queued": "queued", "run.running": "training", "run.registered": "serving", "run.rejected": "rejected by the gate",
    "run.failed": "failed",
    "run.progress": "step {step} / {steps} · loss {loss} · about {eta} s left",
    "run.revision": "new revision {revision}",
    "run.measured": "{condition}: confirmations {cr} right / {cw} wrong · directory {dr} right / {dw} wrong",
    "condition.rules": "rules alone", "condition.current": "serving revision", "condition.candidate": "new revision",
    "evidence": "{part}: {how}", "part.bank": "bank", "part.city": "city", "part.district": "district", "part.branch": "branch",
    "how.exact": "exact", "how.prefix": "prefix", "how.partial": "partial", "how.none": "contradicts",
    "retired_on": "retired {date}",
    "use": "Use this code", "copied": "copied {code}",
    "as_of": "directory as of {date} · {active} codes", "as_of.retired": " · {retired} retired",
    "changes.none": "no changes since the first load",
    "kind.new": "new", "kind.retired": "retired", "kind.returned": "returned", "kind.renamed": "renamed",
    "kind.moved": "moved", "kind.changed": "changed",
    "browse.total": "{total} branches", "browse.page": ", page {page}",
    "state.queued": "queued", "state.running": "running", "state.done": "done",
    "job.header_line": " — header found on line {line} ({above} title lines above it)",
    "job.progress": "{percent} % ({done} / {total} rows)",
    "job.counts": "payable {match} · check by hand {ambiguous} · not in the directory {none} · skipped {skipped} "
      + "· error {error}",
    "job.eta": " · about {seconds} s left",
    "error.unreadable_file": "This file cannot be read: ", "error.too_many_rows": "Too many rows: ",
    "error.body_too_large": "The file is too large: ", "error.body_timeout": "The upload was too slow; try again: ",
    "error.quota_exceeded": "A limit is reached; wait, or delete finished jobs: ",
    "error.rate_limited": "Too many requests; try again shortly: ", "error.unauthorized": "Enter a valid API key: ",
    "error.training_in_progress": "This adapter is being trained; wait for that run to end: ",
    "error.forbidden": "This API key may not use this adapter: ", "error.unknown_model": "No such adapter: ",
    "error.no_model": "This service runs without a model; there is nothing to train: ",
    "error.invalid_code": "Not a valid CNAPS code (12 digits, with a right check digit): ",
    "error.unknown_code": "The directory has no such code: ", "error.retired_code": "This code has left the directory: ",
    "error.unavailable": "The service is briefly unavailable; try again shortly: ",
    "error.overloaded": "The service is busy; try again shortly: ",
    "error.not_ready": "The service is starting; try again shortly: ", "error.timeout": "The service timed out; try again: ",
  },
};

/** The page's language: ``?lang=`` (remembered), else the last one chosen, else Chinese. */
const LANG = (() => {
  const asked = new URLSearchParams(location.search).get("lang");
  if (asked in MESSAGES) localStorage.setItem("serve-app-lang", asked);
  const chosen = localStorage.getItem("serve-app-lang");
  return chosen in MESSAGES ? chosen : "zh";
})();

/** The words for ``key`` in the page's language, ``{name}`` filled from ``vars``; the key itself if none. */
function t(key, vars) {
  const text = MESSAGES[LANG][key] ?? MESSAGES.zh[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => String(vars?.[name] ?? ""));
}

/** Write the static words: ``data-i18n`` (text), ``data-i18n-placeholder`` and ``data-i18n-title``. */
function applyLanguage() {
  document.documentElement.lang = LANG === "zh" ? "zh-CN" : "en";
  document.title = t("title");
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of document.querySelectorAll("[data-i18n-placeholder]")) el.placeholder = t(el.dataset.i18nPlaceholder);
  for (const el of document.querySelectorAll("[data-i18n-title]")) el.title = t(el.dataset.i18nTitle);
}
