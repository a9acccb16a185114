/*
 * The Audit tab (owners and auditors): the audit log, newest first, with filters and CSV export.
 * It plugs into app.js (loaded before it): a view in VIEWS, state.audit, and app.js's helpers
 * (el, api, loadLatest, quoteTerm, fmtTime). Data enters the page as text nodes only.
 */
"use strict";

const AUDIT_PAGE = 50;
const AUDIT_KEYS = ["action", "resource_type", "username", "resource_target", "date_from", "date_to"];
state.audit = { q: "", offset: 0, count: 0, ticket: 0 };

function auditQuery(form) {
  const data = new FormData(form);
  return AUDIT_KEYS.map((key) => [key, String(data.get(key) || "").trim()])
    .filter(([, value]) => value).map(([key, value]) => `${key}:${quoteTerm(value)}`).join(" ");
}

/** One line per changed field; a secret shows only that it changed. */
function auditDiff(diff) {
  return Object.entries(diff || {}).map(([field, change]) => (change.secret
    ? `${field}: (secret)` : `${field}: ${JSON.stringify(change.old)} → ${JSON.stringify(change.new)}`)).join("\n");
}

function auditRow(row) {
  const who = row.user ? row.user.username : "";
  return el("tr", {},
    el("td", { class: "nowrap", title: row.time }, fmtTime(row.time)),
    el("td", { title: row.user_agent || undefined }, who || el("span", { class: "muted" }, "(command line)")),
    el("td", {}, row.action),
    el("td", {}, row.resource_type),
    el("td", { class: "mono", title: row.resource_id || undefined }, row.resource_target || row.resource_id),
    el("td", {}, el("span", { class: `badge ${row.status_code < 400 ? "ok" : "bad"}` }, String(row.status_code))),
    el("td", {}, auditDiff(row.diff) ? el("pre", { class: "text small" }, auditDiff(row.diff)) : el("span", { class: "muted" }, "—")),
    el("td", { class: "mono small", title: row.request_id }, row.ip));
}

async function loadAudit() {
  const slot = state.audit;
  const readers = state.me && (state.me.role === "owner" || state.me.role === "auditor");
  show($("#audit-denied"), !readers);
  if (!readers) return;
  await loadLatest(slot, $("#audit-view"), () => api("/audit", { q: slot.q, limit: AUDIT_PAGE, offset: slot.offset }),
    (body) => {
      slot.count = body.count;
      $("#audit-table tbody").replaceChildren(...body.audit_logs.map(auditRow));
      $("#audit-count").textContent = body.count
        ? `${slot.offset + 1}–${slot.offset + body.audit_logs.length} of ${body.count}` : "";
      show($("#audit-view .empty"), body.count === 0);
      $("#audit-newer").disabled = slot.offset === 0;
      $("#audit-older").disabled = slot.offset + AUDIT_PAGE >= body.count;
    });
}

/** The CSV export needs the token header, so it is fetched and saved from a blob, not linked. */
async function exportAudit() {
  const url = new URL(`${API}/audit`, location.origin);
  url.searchParams.set("format", "csv");
  url.searchParams.set("limit", "1000");
  if (state.audit.q) url.searchParams.set("q", state.audit.q);
  try {
    const response = await fetch(url, { headers: { "Coder-Session-Token": token() }, cache: "no-store" });
    if (!response.ok) throw new ApiError(response.status, `${response.status} ${response.statusText}`.trim());
    const link = el("a", { href: URL.createObjectURL(await response.blob()), download: "aibridge-audit.csv" });
    link.click();
    URL.revokeObjectURL(link.href);
  } catch (err) {
    report(err);
  }
}

VIEWS.audit = loadAudit;
$("#audit-filters").addEventListener("submit", (e) => {
  e.preventDefault();
  Object.assign(state.audit, { q: auditQuery(e.target), offset: 0 });
  loadAudit();
});
$("#audit-filters").addEventListener("reset", () => {
  Object.assign(state.audit, { q: "", offset: 0 });
  loadAudit();
});
$("#audit-newer").addEventListener("click", () => {
  state.audit.offset = Math.max(0, state.audit.offset - AUDIT_PAGE);
  loadAudit();
});
$("#audit-older").addEventListener("click", () => {
  state.audit.offset += AUDIT_PAGE;
  loadAudit();
});
$("#audit-csv").addEventListener("click", exportAudit);
