// The page's behaviour: plain DOM and fetch, no library, nothing loaded from elsewhere.
// Every value from the service is written with textContent, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
applyLanguage();  // i18n.js: the page's words in its language (Chinese unless English was chosen)
$("switch-language").href = "?lang=" + (LANG === "zh" ? "en" : "zh");
const keyInput = $("api-key");
// Kept for this tab only (sessionStorage): a key is a tenant's credential, not a preference.
keyInput.value = sessionStorage.getItem("serve-app-key") || "";
keyInput.addEventListener("change", () => sessionStorage.setItem("serve-app-key", keyInput.value.trim()));

function headers(extra) {
  const h = Object.assign({}, extra || {});
  if (keyInput.value.trim()) h["X-API-Key"] = keyInput.value.trim();
  return h;
}

async function api(path, options) {
  const response = await fetch(path, Object.assign({}, options, { headers: headers(options && options.headers) }));
  if (!response.ok) {
    let message = response.status + " " + response.statusText;
    try {
      const error = (await response.json()).error;
      const advice = t("error." + error.code);
      message = (advice === "error." + error.code ? "" : advice) + error.message;
    } catch (_) { /* not JSON */ }
    throw new Error(message);
  }
  return response;
}

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text == null ? "" : String(text);
  row.appendChild(td);
  return td;
}

function show(element, visible) { element.hidden = !visible; }

// --- ask -------------------------------------------------------------------------------------------
const ROW_SEPARATOR = /[\s|,;/，；｜／]/;
let searchTimer = null;
let searchSeq = 0;
$("search").addEventListener("input", () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(runSearch, 250);
});

async function runSearch() {
  const query = $("search").value.trim();
  const seq = ++searchSeq;
  if (!query) { show($("answer"), false); return; }
  try {
    const result = await (await api("/api/v1/query", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ query }),
    })).json();
    if (seq !== searchSeq) return;  // a newer query is on its way
    show($("search-error"), false);
    const verdict = $("verdict");
    verdict.textContent = t("verdict." + result.verdict);
    verdict.dataset.verdict = result.verdict;
    verdict.className = "verdict " + result.verdict;
    $("reason").textContent = t("reason." + result.reason);
    $("reason").dataset.reason = result.reason;
    // A pasted row (cells, or words with spaces between) is read by its bank's cell: say which words were read.
    $("read-as").textContent = t("read_as", { text: result.normalized });
    show($("read-as"), ROW_SEPARATOR.test(query));
    const best = result.matches[0];
    $("confidence").textContent = confirmationNote(result.confirmation)
      || (best ? t("confidence", { value: best.confidence.toFixed(3) }) : "");
    const body = $("matches");
    body.replaceChildren();
    for (const match of result.matches) {
      const row = document.createElement("tr");
      cell(row, match.code);
      cell(row, match.name);
      cell(row, match.city);
      cell(row, match.confidence.toFixed(3));
      const evidence = cell(row, "");
      if (match.retired_on) {
        const chip = document.createElement("span");
        chip.className = "chip retired";
        chip.textContent = t("retired_on", { date: match.retired_on });
        evidence.appendChild(chip);
      }
      // Only a payee or a choice offered gets a copy button: never a retired branch, never the branches
      // of a none (those of the words elsewhere, listed only to be seen).
      if (result.verdict !== "none" && !match.retired_on) row.appendChild(useCodeButton(match.code));
      for (const [part, how] of Object.entries(match.evidence)) {
        if (how === "unstated") continue;
        const chip = document.createElement("span");
        chip.className = "chip " + how;
        chip.dataset.evidence = part + ": " + how;
        chip.textContent = t("evidence", { part: t("part." + part), how: t("how." + how) });
        evidence.appendChild(chip);
      }
      body.appendChild(row);
    }
    const successors = $("successors");
    successors.replaceChildren();
    for (const branch of result.successors || []) {
      const row = document.createElement("tr");
      cell(row, branch.code); cell(row, branch.name); cell(row, branch.city);
      successors.appendChild(row);
    }
    show($("successors-box"), result.reason === "branch_retired");
    show($("answer"), true);
  } catch (error) {
    if (seq !== searchSeq) return;
    $("search-error").textContent = error.message;
    show($("search-error"), true);
  }
}

// A person's decision on this text, as the answer carries it: who and when, or why it is no longer used.
function confirmationNote(confirmation) {
  if (!confirmation) return "";
  if (!confirmation.used) {
    return t("confirmation.not_used", { code: confirmation.code, why: t("why." + confirmation.not_used_because) });
  }
  return t("confirmed_by", { who: confirmation.decided_by, date: confirmation.decided_at.slice(0, 10) });
}

// A candidate's code, copied for the clerk's payment form (never for a retired branch).
function useCodeButton(code) {
  const td = document.createElement("td");
  const button = document.createElement("button");
  button.type = "button";
  button.className = "use-code";
  button.textContent = t("use");
  button.addEventListener("click", async () => {
    try { await navigator.clipboard.writeText(code); button.textContent = t("copied", { code }); }
    catch (_) { button.textContent = code; }  // no clipboard (plain http elsewhere): show it to copy by hand
  });
  td.appendChild(button);
  return td;
}

// --- how current the directory is, and what changed --------------------------------------------------
async function loadDirectory() {
  try {
    const info = await (await api("/api/v1/directory")).json();
    $("directory-as-of").textContent = t("as_of", { date: info.as_of || "?", active: info.active })
      + (info.retired ? t("as_of.retired", { retired: info.retired }) : "");
    const changes = await (await api("/api/v1/directory/changes?page_size=20")).json();
    const body = $("changes");
    body.replaceChildren();
    for (const change of changes.items) {
      const row = document.createElement("tr");
      cell(row, change.as_of); cell(row, t("kind." + change.kind)); cell(row, change.code);
      cell(row, change.kind === "renamed" ? `${change.old.name} → ${change.new.name}` : `${change.bank} ${change.city}`);
      body.appendChild(row);
    }
    if (!changes.items.length) cell(body.insertRow(), t("changes.none"));
  } catch (_) { /* the rest of the page works without it */ }
}
loadDirectory();

// While a first run builds the demo model (serve-app up), the rules answer: say so, with the build's progress.
async function loadModelState() {
  try {
    const ready = await (await fetch("/readyz")).json();
    const warming = ready.models === "warming";
    const progress = ready.warming;
    $("model-state").textContent = !warming ? "" : progress && progress.phase === "training"
      ? t("warming.training", { adapter: progress.adapter, step: progress.step, steps: progress.steps,
        eta: progress.eta_s ?? "?" })
      : t("warming");
    show($("model-state"), warming);
    if (warming) setTimeout(loadModelState, 5000);
  } catch (_) { /* the page works without it */ }
}
loadModelState();

// --- code lookup -------------------------------------------------------------------------------------
$("code-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const out = $("code-result");
  try {
    const record = await (await api("/api/v1/branches/" + encodeURIComponent($("code").value.trim()))).json();
    out.className = "";
    out.textContent = `${record.code}  ${record.name}  (${record.province} ${record.city})`;
  } catch (error) {
    out.className = "error";
    out.textContent = error.message;
  }
});

// --- browse ------------------------------------------------------------------------------------------
let browsePage = 1;
async function browse(page) {
  const params = new URLSearchParams({ page: String(page), page_size: "20" });
  for (const name of ["bank", "province", "city", "q"]) {
    const value = $("browse-" + name).value.trim();
    if (value) params.set(name, value);
  }
  try {
    const result = await (await api("/api/v1/branches?" + params)).json();
    browsePage = result.page;
    $("browse-total").textContent = t("browse.total", { total: result.total })
      + (result.total ? t("browse.page", { page: result.page }) : "");
    const body = $("browse-items");
    body.replaceChildren();
    for (const item of result.items) {
      const row = document.createElement("tr");
      cell(row, item.code); cell(row, item.name); cell(row, item.city);
      body.appendChild(row);
    }
    $("browse-prev").disabled = result.page <= 1;
    $("browse-next").disabled = result.page * result.page_size >= result.total;
  } catch (error) {
    $("browse-total").textContent = error.message;
  }
}
$("browse-form").addEventListener("submit", (event) => { event.preventDefault(); browse(1); });
$("browse-prev").addEventListener("click", () => browse(browsePage - 1));
$("browse-next").addEventListener("click", () => browse(browsePage + 1));

async function loadBanks() {
  try {
    const banks = await (await api("/api/v1/banks")).json();
    const list = $("banks");
    for (const bank of banks.filter((b) => b.branches > 0)) {
      const option = document.createElement("option");
      option.value = bank.name;
      option.label = t("browse.total", { total: bank.branches });
      list.appendChild(option);
    }
  } catch (_) { /* browsing still works by typing */ }
}
loadBanks();

// --- reconcile a file ----------------------------------------------------------------------------------
$("upload-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const file = $("upload-file").files[0];
  show($("upload-error"), false);
  if (!file) return;
  const params = new URLSearchParams({ filename: file.name });
  const column = $("upload-column").value.trim();
  if (column) params.set("column", column);
  try {
    const job = await (await api("/api/v1/jobs?" + params, {
      method: "POST", headers: { "Content-Type": file.type || "application/octet-stream" }, body: file,
    })).json();
    show($("job"), true);
    show($("job-downloads"), false);
    follow(job.id);
  } catch (error) {
    $("upload-error").textContent = error.message;
    show($("upload-error"), true);
  }
});

async function follow(jobId) {
  let job;
  try {
    job = await (await api("/api/v1/jobs/" + jobId)).json();
  } catch (error) {
    $("upload-error").textContent = error.message;
    show($("upload-error"), true);
    return;
  }
  $("job-state").textContent = t("state." + job.state);
  $("job-state").dataset.state = job.state;
  $("job-file").textContent = job.filename + (job.header_line > 1
    ? t("job.header_line", { line: job.header_line, above: job.header_line - 1 }) : "");
  $("job-bar").value = job.progress;
  $("job-progress").textContent = t("job.progress",
    { percent: Math.floor(job.progress * 100), done: job.done_rows, total: job.total_rows });
  $("job-counts").textContent = t("job.counts", job.counts)
    + (job.decided_rows ? t("job.decided", { decided: job.decided_rows }) : "")
    + (job.eta_s && job.state !== "done" ? t("job.eta", { seconds: Math.ceil(job.eta_s) }) : "");
  if (job.state === "done") {
    const stem = job.filename.replace(/\.[^.]*$/, "");
    for (const kind of ["csv", "xlsx"]) {
      const link = $("download-" + kind);
      link.textContent = `${stem}.result.${kind}`;
      const path = `/api/v1/jobs/${jobId}/result.${kind}?lang=${LANG}`;  // the file's added headers in the page's language
      link.onclick = (event) => { event.preventDefault(); download(path, link.textContent); };
    }
    show($("job-downloads"), true);
    loadRecentJobs();
    loadReview(jobId, job.filename);  // review.js: the rows to decide
    return;
  }
  setTimeout(() => follow(jobId), 500);
}

// The tenant's recent files: reopened with a click (a reload of the page forgets nothing).
async function loadRecentJobs() {
  try {
    const jobs = await (await api("/api/v1/jobs")).json();
    const body = $("recent-jobs");
    body.replaceChildren();
    for (const job of jobs.slice(0, 10)) {
      const row = document.createElement("tr");
      const open = document.createElement("a");
      open.href = "#";
      open.textContent = job.filename;
      open.addEventListener("click", (event) => { event.preventDefault(); show($("job"), true); follow(job.id); });
      row.appendChild(document.createElement("td")).appendChild(open);
      cell(row, t("state." + job.state));
      cell(row, `${job.done_rows} / ${job.total_rows}`);
      cell(row, new Date(job.created_at).toLocaleString("zh-CN"));
      body.appendChild(row);
    }
  } catch (_) { /* without a key (keys mode) there is nothing to list yet */ }
}
loadRecentJobs();
keyInput.addEventListener("change", loadRecentJobs);

async function download(path, filename) {
  try {
    const blob = await (await api(path)).blob();  // fetched so that the key header goes with it
    const url = URL.createObjectURL(blob);
    const a = document.createElement("a");
    a.href = url;
    a.download = filename;
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (error) {
    $("upload-error").textContent = error.message;
    show($("upload-error"), true);
  }
}
