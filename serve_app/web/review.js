// Deciding a job's unsure rows, one at a time, by mouse or keyboard; and the organisation's confirmations.
// Uses app.js's helpers ($, api, cell, show, download) and i18n.js's t().
"use strict";

const review = { jobId: null, filename: "", items: [], index: 0, decided: 0 };

/** Open the review queue of a finished job: its rows still to decide. */
async function loadReview(jobId, filename) {
  review.jobId = jobId;
  review.filename = filename;
  show($("review-error"), false);
  try {
    const page = await (await api(`/api/v1/jobs/${jobId}/review?decided=false&page_size=200`)).json();
    const status = await (await api(`/api/v1/jobs/${jobId}`)).json();
    review.items = page.items;
    review.index = 0;
    review.decided = status.decided_rows;
    show($("review-section"), page.total > 0 || status.decided_rows > 0);
    showReviewRow();
  } catch (error) {
    $("review-error").textContent = error.message;
    show($("review-error"), true);
  }
}

function showReviewRow() {
  const item = review.items[review.index];
  $("review-progress").textContent = t("review.progress",
    { file: review.filename, left: review.items.length, decided: review.decided });
  show($("review-row"), Boolean(item));
  show($("review-done"), !item);
  if (!item) return;
  $("review-number").textContent = t("review.number", { row: item.row });
  $("review-text").textContent = item.text;
  $("review-cells").textContent = Object.entries(item.cells).filter(([, value]) => value)
    .map(([name, value]) => `${name}：${value}`).join("  ");
  $("review-verdict").textContent = t("verdict." + item.verdict);
  $("review-verdict").className = "verdict " + item.verdict;
  $("review-reason").textContent = t("reason." + item.reason);
  const list = $("review-candidates");
  list.replaceChildren();
  item.candidates.slice(0, 5).forEach((choice, n) => {
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "choose";
    button.disabled = Boolean(choice.retired_on);  // a retired branch is shown, never chosen
    button.textContent = `${n + 1} · ${choice.code}  ${choice.name}  ${choice.city}`
      + (choice.retired_on ? "  " + t("retired_on", { date: choice.retired_on }) : "");
    button.addEventListener("click", () => decideRow({ code: choice.code }));
    li.appendChild(button);
    list.appendChild(li);
  });
}

async function decideRow(body) {
  const item = review.items[review.index];
  if (!item) return;
  show($("review-error"), false);
  try {
    await api(`/api/v1/jobs/${review.jobId}/rows/${item.row}/decision`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    review.items.splice(review.index, 1);
    review.decided += 1;
    if (review.index >= review.items.length) review.index = 0;
    showReviewRow();
    loadConfirmations();
  } catch (error) {
    $("review-error").textContent = error.message;
    show($("review-error"), true);
  }
}

function nextReviewRow() {
  if (!review.items.length) return;
  review.index = (review.index + 1) % review.items.length;
  showReviewRow();
}

$("review-none").addEventListener("click", () => decideRow({ none: true }));
$("review-next").addEventListener("click", nextReviewRow);
document.addEventListener("keydown", (event) => {
  if ($("review-row").hidden || event.ctrlKey || event.metaKey || event.altKey) return;
  if (event.target instanceof HTMLInputElement || event.target instanceof HTMLTextAreaElement) return;
  const item = review.items[review.index];
  if (event.key >= "1" && event.key <= "5") {
    const choice = item && item.candidates[Number(event.key) - 1];
    if (choice && !choice.retired_on) decideRow({ code: choice.code });
  } else if (event.key === "0") {
    decideRow({ none: true });
  } else if (event.key === "n" || event.key === "N") {
    nextReviewRow();
  } else {
    return;
  }
  event.preventDefault();
});

// --- the organisation's confirmations ----------------------------------------------------------------
async function loadConfirmations() {
  try {
    const page = await (await api("/api/v1/confirmations?page_size=50")).json();
    const body = $("confirmations");
    body.replaceChildren();
    for (const item of page.items) {
      const row = document.createElement("tr");
      cell(row, item.text);
      cell(row, item.code ? `${item.code} ${item.name}` : t("decided_none"));
      cell(row, t("confirmed_by", { who: item.decided_by, date: item.decided_at.slice(0, 10) }));
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = t("confirmations.delete");
      button.addEventListener("click", async () => {
        try { await api(`/api/v1/confirmations/${item.id}`, { method: "DELETE" }); } catch (_) { /* listed again */ }
        loadConfirmations();
      });
      row.appendChild(document.createElement("td")).appendChild(button);
      body.appendChild(row);
    }
    if (!page.items.length) cell(body.insertRow(), t("confirmations.none"));
  } catch (_) { /* without a key (keys mode) there is nothing to list yet */ }
}
$("confirmations-export").addEventListener("click", (event) => {
  event.preventDefault();
  download("/api/v1/confirmations.csv", "confirmations.csv");
});
loadConfirmations();
keyInput.addEventListener("change", loadConfirmations);
