// Training a new revision of an adapter from the organisation's confirmations, and following its runs:
// progress while it trains, then the gate's measurements and decision. Uses app.js's helpers and t().
"use strict";

let trainingTimer = null;
let trainingFollowed = false; // a run of the adapter shown is queued or running: keep following it

// keepError: an error just shown (a run refused) stays in view above the runs listed.
async function loadTrainingRuns(keepError = false) {
  const adapter = $("training-adapter").value.trim();
  clearTimeout(trainingTimer);
  if (!adapter) return;
  try {
    const runs = await (await api(`/api/v1/adapters/${encodeURIComponent(adapter)}/training`)).json();
    if (!keepError) show($("training-error"), false);
    const body = $("training-runs");
    body.replaceChildren();
    for (const run of runs) body.appendChild(trainingRow(run));
    if (!runs.length) cell(body.insertRow(), t("training.none"));
    trainingFollowed = runs.some((run) => run.state === "queued" || run.state === "running");
    if (trainingFollowed) trainingTimer = setTimeout(() => loadTrainingRuns(keepError), 2000);
  } catch (error) {
    $("training-error").textContent = error.message;
    show($("training-error"), true);
    // A failed look (the service busy or restarting) does not stop following a run that is training.
    if (trainingFollowed) trainingTimer = setTimeout(() => loadTrainingRuns(keepError), 5000);
  }
}

function trainingRow(run) {
  const row = document.createElement("tr");
  row.dataset.state = run.state;
  cell(row, new Date(run.created_at).toLocaleString(LANG === "zh" ? "zh-CN" : "en"));
  cell(row, t("run." + run.state));
  const detail = cell(row, "");
  const lines = [];
  if (run.state === "queued" || run.state === "running") {
    lines.push(t("run.progress", { step: run.step, steps: run.steps,
      loss: run.loss == null ? "–" : run.loss.toFixed(3), eta: run.eta_s == null ? "–" : Math.ceil(run.eta_s) }));
  }
  if (run.revision != null) lines.push(t("run.revision", { revision: run.revision }));
  if (run.report) {
    for (const [condition, sources] of Object.entries(run.report.measured)) {
      const c = sources.confirmations || { right: 0, wrong: 0 };
      const d = sources.directory || { right: 0, wrong: 0 };
      lines.push(t("run.measured", { condition: t("condition." + condition), cr: c.right, cw: c.wrong,
        dr: d.right, dw: d.wrong }));
    }
    lines.push(...run.report.reasons);
  }
  if (run.error) lines.push(run.error);
  for (const line of lines) {
    const p = document.createElement("div");
    p.textContent = line;
    detail.appendChild(p);
  }
  return row;
}

$("training-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const adapter = $("training-adapter").value.trim();
  show($("training-error"), false);
  try {
    await api(`/api/v1/adapters/${encodeURIComponent(adapter)}/training`, {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ steps: Number($("training-steps").value) || 60 }),
    });
    trainingFollowed = true;
  } catch (error) {
    $("training-error").textContent = error.message;
    show($("training-error"), true);
    loadTrainingRuns(true); // the run in the way, if one is (this adapter is being trained)
    return;
  }
  loadTrainingRuns();
});
$("training-show").addEventListener("click", () => loadTrainingRuns());
