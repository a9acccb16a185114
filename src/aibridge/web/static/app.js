/* AI Bridge dashboard: vanilla JS, no build step, no third-party code (the server may be offline).
 *
 * Everything the API returns is user-controlled (prompts, tool inputs, model thoughts, even user
 * names), so data enters the page only as text: el() appends strings as text nodes and the rest of
 * the code sets textContent, never innerHTML. The page's Content-Security-Policy also enforces
 * Trusted Types, so an HTML-string sink would throw instead of rendering markup.
 *
 * The token lives in sessionStorage: it survives a reload but not the tab, and no cookie carries it,
 * so other sites cannot make the browser send it (no CSRF surface).
 */
"use strict";

const TOKEN_KEY = "aibridge.token";
const API = "/api/v2";
const PAGE_SIZE = 50;
const PROMPT_PREVIEW = 140;
const DEFAULT_VIEW = "interceptions";
const TOKEN_FIELDS = ["input_tokens", "output_tokens", "cache_read_input_tokens", "cache_write_input_tokens"];

const state = {
  me: null,
  // cursors[i] is the after_id that loads page i (the API pages with a cursor, not an offset).
  interceptions: { q: "", cursors: [""], page: [], count: 0, ticket: 0 },
  sessions: { offset: 0, count: 0, ticket: 0 },
  usage: { ticket: 0 },
  cost: { ticket: 0 },
  detail: [],          // stack of detail renderers, so "← Back" returns from an interception to its session
};

// ---------------------------------------------------------------- DOM helpers

const $ = (selector, root = document) => root.querySelector(selector);

/** Builds an element. Strings among the children become text nodes: they are never parsed as HTML. */
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function show(node, visible) {
  node.hidden = !visible;
}

// ---------------------------------------------------------------- formatting

const numberFormat = new Intl.NumberFormat();
const fmtNum = (n) => numberFormat.format(n || 0);
const usdFormat = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD", maximumFractionDigits: 4 });
const fmtUsd = (n) => (n === null || n === undefined ? "" : usdFormat.format(n));
const pad = (n) => String(n).padStart(2, "0");

/** Local time as YYYY-MM-DD HH:MM:SS: sortable by eye, unlike most locale formats. */
function fmtTime(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function fmtDuration(startIso, endIso) {
  const ms = new Date(endIso) - new Date(startIso);
  if (!Number.isFinite(ms) || ms < 0) return "";
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`;
}

/** One line, at most `max` characters: table cells must not grow with a 20 kB prompt. */
function truncate(text, max) {
  const line = String(text || "").replace(/\s+/g, " ").trim();
  return line.length > max ? line.slice(0, max - 1) + "…" : line;
}

/** Tool inputs are usually JSON strings: indent them when they parse, else show them as sent. */
function prettyJson(value) {
  if (typeof value !== "string") return JSON.stringify(value, null, 2);
  try {
    return JSON.stringify(JSON.parse(value), null, 2);
  } catch {
    return value;
  }
}

function userLabel(initiator) {
  if (!initiator) return "—";
  const name = initiator.username || initiator.id;
  return initiator.deleted ? `${name} (deleted)` : name;
}

// ---------------------------------------------------------------- records

function tokenTotals(rec) {
  const totals = Object.fromEntries(TOKEN_FIELDS.map((k) => [k, 0]));
  for (const usage of rec.token_usages || []) {
    for (const key of TOKEN_FIELDS) totals[key] += usage[key] || 0;
  }
  return totals;
}

function promptOf(rec) {
  return (rec.user_prompts || []).map((p) => p.prompt).join("\n\n");
}

/** A finished interception has no outcome in its metadata unless it failed or was abandoned. */
function outcomeOf(rec) {
  return (rec.metadata && rec.metadata.outcome) || "ok";
}

function outcomeBadge(rec) {
  const outcome = outcomeOf(rec);
  const meta = rec.metadata || {};
  const title = [meta.error, meta.upstream_status && `upstream status ${meta.upstream_status}`]
    .filter(Boolean).join(" — ");
  const badges = [el("span", { class: `badge ${outcome === "ok" ? "ok" : "bad"}`, title: title || undefined }, outcome)];
  const failedTools = (rec.tool_usages || []).filter((t) => t.invocation_error).length;
  if (failedTools) badges.push(el("span", { class: "badge bad", title: "tool calls that failed" }, `${failedTools} tool err`));
  return badges;
}

// ---------------------------------------------------------------- API

class ApiError extends Error {
  constructor(status, message, detail) {
    super(message);
    this.status = status;
    this.detail = detail || "";
  }
}

const token = () => sessionStorage.getItem(TOKEN_KEY) || "";

/** One API call; a non-2xx answer becomes an ApiError carrying the API's {message, detail}. */
async function apiCall(method, url, body) {
  const headers = { "Coder-Session-Token": token(), Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(url, {
      method, headers, cache: "no-store", body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    throw new ApiError(0, "Cannot reach the AI Bridge server.", err && err.message);
  }
  const text = await response.text();
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    // Not JSON (a proxy's error page?): fall back to the status line below.
  }
  if (!response.ok) {
    const message = (parsed && parsed.message) || `${response.status} ${response.statusText}`.trim();
    throw new ApiError(response.status, message, parsed && parsed.detail);
  }
  return parsed;
}

/** GETs an API path with query parameters (empty ones left out). */
async function api(path, params = {}) {
  const url = new URL(API + path, location.origin);
  for (const [key, value] of Object.entries(params)) {
    if (value !== "" && value !== undefined && value !== null) url.searchParams.set(key, value);
  }
  return apiCall("GET", url);
}

/** A state-changing call with a JSON body (session.js adds the CSRF header to cookie-signed writes). */
async function apiSend(method, path, body) {
  return apiCall(method, new URL(API + path, location.origin), body);
}

function describe(err) {
  if (err instanceof ApiError) {
    const status = err.status ? `${err.status}: ` : "";
    return `${status}${err.message}${err.detail ? ` (${err.detail})` : ""}`;
  }
  console.error(err);
  return `Unexpected error: ${err && err.message ? err.message : err}`;
}

const isAuthError = (err) => err instanceof ApiError && (err.status === 401 || err.status === 403);

/** Why a token was refused; a suspended account says so plainly (an owner can activate it again). */
function rejectedText(err, what) {
  if (err.status === 403 && /suspended/.test(err.message)) {
    return `This account is suspended (${describe(err)}): ask an owner to activate it again.`;
  }
  return `The server rejected ${what} (${describe(err)}).`;
}

/** Shows a failed call; a missing or rejected token sends the user back to the sign-in box. */
function report(err) {
  if (isAuthError(err)) {
    signOut(`${rejectedText(err, "the token")} Sign in again.`);
  } else {
    showBanner(describe(err));
  }
}

function showBanner(text) {
  $("#banner-text").textContent = text;
  show($("#banner"), true);
}

function hideBanner() {
  show($("#banner"), false);
}

/** Runs a change, then reloads the page's data (marking ``view`` busy meanwhile, when given). A refusal
 * is shown after the reload: shown before, the reload's success would hide it at once. */
async function changeThenReload(work, reload, view) {
  if (view) $(view).setAttribute("aria-busy", "true");
  let refused = null;
  try {
    await work();
  } catch (err) {
    refused = err;
  }
  await reload();
  if (refused) report(refused);
  else hideBanner();
}

/** Runs a view's load, marking it busy and ignoring answers that a newer load has overtaken. */
async function loadLatest(slot, view, load, render) {
  const ticket = ++slot.ticket;
  view.setAttribute("aria-busy", "true");
  try {
    const body = await load();
    if (ticket !== slot.ticket) return;
    render(body);
    hideBanner();
  } catch (err) {
    if (ticket === slot.ticket) report(err);
  } finally {
    if (ticket === slot.ticket) view.setAttribute("aria-busy", "false");
  }
}

// ---------------------------------------------------------------- sign-in

async function signIn(event) {
  event.preventDefault();
  const input = $("#token-input");
  const value = input.value.trim();
  if (!value) return;
  sessionStorage.setItem(TOKEN_KEY, value);
  input.value = "";
  await start();
}

/** Checks the stored token with /users/me and opens the dashboard, or shows why it cannot. */
async function start() {
  let me;
  try {
    me = await api("/users/me");
  } catch (err) {
    signOut(isAuthError(err) ? rejectedText(err, "this token") : describe(err));
    return;
  }
  state.me = me;
  $("#who-name").textContent = me.name ? `${me.name} (${me.username})` : me.username;
  $("#who-role").textContent = me.role;
  $("#who-role").className = `badge role-${me.role}`;
  show($("#signin-view"), false);
  show($("#tabs"), true);
  show($("#groups-tab"), me.role === "owner");
  show($("#who"), true);
  show($("#audit-tab"), me.role === "owner" || me.role === "auditor");
  document.dispatchEvent(new CustomEvent("aibridge:signed-in", { detail: me }));   // pages in other files
  loadSuggestions();
  route();
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  state.me = null;
  state.interceptions = { q: "", cursors: [""], page: [], count: 0, ticket: state.interceptions.ticket + 1 };
  state.sessions = { offset: 0, count: 0, ticket: state.sessions.ticket + 1 };
  state.usage.ticket += 1;
  state.cost.ticket += 1;
  closeDetail();
  hideBanner();
  $("#filters").reset();
  for (const view of document.querySelectorAll(".view")) show(view, false);
  for (const body of document.querySelectorAll("table.data tbody")) body.replaceChildren();
  show($("#tabs"), false);
  show($("#who"), false);
  show($("#signin-view"), true);
  $("#signin-error").textContent = message || "";
  show($("#signin-error"), Boolean(message));
  $("#token-input").focus();
}

/** Fills the filter inputs' suggestion lists with the models and clients seen (best effort). */
async function loadSuggestions() {
  for (const [path, list] of [["/aibridge/models", "#models-list"], ["/aibridge/clients", "#clients-list"]]) {
    try {
      const values = await api(path);
      $(list).replaceChildren(...values.map((v) => el("option", { value: v })));
    } catch {
      // Only suggestions: the table's own load reports errors.
    }
  }
}

// ---------------------------------------------------------------- navigation

const VIEWS = { interceptions: loadInterceptions, sessions: loadSessions, usage: loadUsage, cost: loadCost,
  groups: loadGroups };     // groups.js

function route() {
  if (!state.me) return;
  const wanted = location.hash.slice(1);
  const name = Object.hasOwn(VIEWS, wanted) ? wanted : DEFAULT_VIEW;
  for (const key of Object.keys(VIEWS)) show($(`#${key}-view`), key === name);
  for (const link of document.querySelectorAll("#tabs a")) {
    if (link.dataset.view === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  closeDetail();
  VIEWS[name]();
}

// ---------------------------------------------------------------- interceptions

/** The API splits q like a shell (Python's shlex): quote values holding spaces, quotes or backslashes. */
function quoteTerm(value) {
  return /[\s"'\\]/.test(value) ? `"${value.replace(/["\\]/g, "\\$&")}"` : value;
}

function buildQuery(form) {
  const terms = [];
  for (const key of ["initiator", "provider", "model", "client"]) {
    const value = form.elements[key].value.trim();
    if (value) terms.push(`${key}:${quoteTerm(value)}`);
  }
  for (const key of ["started_after", "started_before"]) {
    // datetime-local has no zone and the API insists on one: send the instant in UTC.
    const value = form.elements[key].value;
    if (value) terms.push(`${key}:${new Date(value).toISOString()}`);
  }
  return terms.join(" ");
}

function applyFilters(event) {
  event.preventDefault();
  state.interceptions.q = buildQuery(event.target);
  state.interceptions.cursors = [""];
  loadInterceptions();
}

function clearFilters() {
  // The reset event fires before the inputs are cleared: reload on the next tick. Sign-out resets the
  // form too, and must not reload anything (that call would fail with 401 and sign out again).
  setTimeout(() => {
    if (!state.me) return;
    state.interceptions.q = "";
    state.interceptions.cursors = [""];
    loadInterceptions();
  });
}

function loadInterceptions() {
  const s = state.interceptions;
  const params = { q: s.q, limit: PAGE_SIZE, after_id: s.cursors[s.cursors.length - 1] };
  return loadLatest(s, $("#interceptions-view"), () => api("/aibridge/interceptions", params), (body) => {
    s.page = body.results;
    s.count = body.count;
    renderInterceptions();
  });
}

function pageInterceptions(older) {
  const s = state.interceptions;
  if (older && s.page.length) s.cursors.push(s.page[s.page.length - 1].id);
  else if (!older && s.cursors.length > 1) s.cursors.pop();
  else return;
  loadInterceptions();
}

function renderInterceptions() {
  const s = state.interceptions;
  const first = (s.cursors.length - 1) * PAGE_SIZE;
  $("#interceptions-table tbody").replaceChildren(...s.page.map(interceptionRow));
  show($("#interceptions-view .empty"), s.page.length === 0);
  $("#interceptions-count").textContent = s.page.length
    ? `${fmtNum(first + 1)}–${fmtNum(first + s.page.length)} of ${fmtNum(s.count)} interceptions`
    : `0 of ${fmtNum(s.count)} interceptions`;
  $("#interceptions-newer").disabled = s.cursors.length <= 1;
  $("#interceptions-older").disabled = first + s.page.length >= s.count;
}

/** A table row that opens `open()` on click or Enter (rows are focusable for keyboard users). */
function clickableRow(open, ...cells) {
  return el("tr", {
    tabindex: 0,
    onclick: open,
    onkeydown: (e) => { if (e.key === "Enter") open(); },
  }, ...cells);
}

const numCell = (n) => el("td", { class: "num" }, fmtNum(n));
const cacheCell = (read, write) => el("td", { class: "num" }, `${fmtNum(read)} / ${fmtNum(write)}`);

function providerLabel(rec) {
  return rec.provider_name && rec.provider_name !== rec.provider ? `${rec.provider_name} (${rec.provider})` : rec.provider;
}

function interceptionRow(rec) {
  const t = tokenTotals(rec);
  const prompt = promptOf(rec);
  return clickableRow(() => openDetail(interceptionDetail(rec)),
    el("td", { class: "nowrap", title: rec.started_at }, fmtTime(rec.started_at)),
    el("td", { title: rec.initiator && rec.initiator.name }, userLabel(rec.initiator)),
    el("td", { class: "nowrap" }, rec.client || "—"),
    el("td", { class: "nowrap" }, providerLabel(rec)),
    el("td", { class: "mono nowrap" }, rec.model),
    el("td", { class: "prompt", title: truncate(prompt, 2000) || undefined },
      prompt ? truncate(prompt, PROMPT_PREVIEW) : el("span", { class: "muted" }, "(no prompt)")),
    numCell(t.input_tokens),
    numCell(t.output_tokens),
    cacheCell(t.cache_read_input_tokens, t.cache_write_input_tokens),
    numCell((rec.tool_usages || []).length),
    el("td", { class: "nowrap" }, outcomeBadge(rec)),
  );
}

// ---------------------------------------------------------------- detail panel

function openDetail(render) {
  state.detail = [render];
  renderDetail();
}

function pushDetail(render) {
  state.detail.push(render);
  renderDetail();
}

function popDetail() {
  if (state.detail.length > 1) state.detail.pop();
  renderDetail();
}

function closeDetail() {
  state.detail = [];
  show($("#detail"), false);
  show($("#detail-backdrop"), false);
}

function renderDetail() {
  const render = state.detail[state.detail.length - 1];
  if (!render) return closeDetail();
  const { title, content } = render();
  $("#detail-title").textContent = title;
  $("#detail-body").replaceChildren(...content.filter(Boolean));     // sections without data are null
  $("#detail-body").scrollTop = 0;
  show($("#detail-back"), state.detail.length > 1);
  show($("#detail"), true);
  show($("#detail-backdrop"), true);
  $("#detail-close").focus();
}

function section(title, ...children) {
  return el("section", { class: "detail-section" }, el("h3", {}, title), ...children);
}

/** A definition list from [label, value] pairs; empty values are left out. */
function fields(pairs) {
  return el("dl", { class: "fields" }, pairs
    .filter(([, value]) => value !== undefined && value !== null && value !== "")
    .map(([label, value]) => [el("dt", {}, label), el("dd", {}, value)]));
}

const textBlock = (text, cls = "") => el("pre", { class: `text ${cls}` }, text);
const mono = (text) => el("span", { class: "mono" }, text);

function hasKeys(obj) {
  return obj && typeof obj === "object" && Object.keys(obj).length > 0;
}

function interceptionDetail(rec) {
  return () => {
    const meta = rec.metadata || {};
    const sessionLink = rec.client_session_id
      ? el("button", { type: "button", class: "link mono", onclick: () => openSession(rec.client_session_id, true) },
        rec.client_session_id)
      : null;
    const outcome = outcomeOf(rec);
    return {
      title: `${rec.model} · ${fmtTime(rec.started_at)}`,
      content: [
        fields([
          ["User", rec.initiator ? `${userLabel(rec.initiator)}${rec.initiator.name ? ` (${rec.initiator.name})` : ""}` : ""],
          ["Provider", providerLabel(rec)],
          ["Model", mono(rec.model)],
          ["Requested model", rec.requested_model && rec.requested_model !== rec.model ? rec.requested_model : ""],
          ["Cost", rec.cost_usd === null || rec.cost_usd === undefined ? "no price for this model" : fmtUsd(rec.cost_usd)],
          ["Credential", rec.credential_kind === "byok"
            ? ["user's own key (BYOK) ", rec.credential_hint && mono(rec.credential_hint)] : "centralized"],
          ["Client", rec.client],
          ["Session", sessionLink],
          ["User agent", rec.user_agent],
          ["Started", fmtTime(rec.started_at)],
          ["Ended", rec.ended_at ? `${fmtTime(rec.ended_at)} (${fmtDuration(rec.started_at, rec.ended_at)})` : ""],
          ["Streaming", meta.streaming === undefined ? "" : meta.streaming ? "yes" : "no"],
          ["Outcome", el("span", {}, outcomeBadge(rec))],
          ["Error", outcome === "ok" ? "" : [meta.error, meta.upstream_status && `(upstream status ${meta.upstream_status})`]
            .filter(Boolean).join(" ")],
          ["ID", mono(rec.id)],
        ]),
        promptSection(rec),
        tokenSection(rec),
        toolSection(rec),
        thoughtSection(rec),
        section("Metadata", textBlock(JSON.stringify(meta, null, 2), "code")),
      ],
    };
  };
}

function promptSection(rec) {
  const prompts = rec.user_prompts || [];
  if (!prompts.length) return section("Prompt", el("p", { class: "muted" }, "No prompt was recorded."));
  return section(prompts.length > 1 ? `Prompts (${prompts.length})` : "Prompt",
    prompts.map((p) => textBlock(p.prompt, "prompt-text")));
}

function tokenSection(rec) {
  const usages = rec.token_usages || [];
  if (!usages.length) return section("Token usage", el("p", { class: "muted" }, "No usage was reported."));
  const totals = tokenTotals(rec);
  const rows = usages.map((u) => el("tr", {},
    el("td", { class: "mono break" }, u.provider_response_id || "—"),
    numCell(u.input_tokens), numCell(u.output_tokens),
    numCell(u.cache_read_input_tokens), numCell(u.cache_write_input_tokens),
    el("td", { class: "mono small" }, hasKeys(u.metadata)
      ? Object.entries(u.metadata).map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`).join(", ")
      : ""),
  ));
  if (usages.length > 1) {
    rows.push(el("tr", { class: "total" }, el("td", {}, "Total"),
      ...TOKEN_FIELDS.map((k) => numCell(totals[k])), el("td", {})));
  }
  return section(`Token usage (${usages.length})`, el("div", { class: "table-wrap" }, el("table", { class: "data compact" },
    el("thead", {}, el("tr", {}, el("th", {}, "Response"), el("th", { class: "num" }, "Input"),
      el("th", { class: "num" }, "Output"), el("th", { class: "num" }, "Cache read"),
      el("th", { class: "num" }, "Cache write"), el("th", {}, "Other"))),
    el("tbody", {}, rows))));
}

function toolSection(rec) {
  const tools = rec.tool_usages || [];
  if (!tools.length) return section("Tool calls", el("p", { class: "muted" }, "No tool calls."));
  return section(`Tool calls (${tools.length})`, tools.map(toolCard));
}

/** One tool call (an interception's tool_usages item or a session thread's tool_calls item). */
function toolCard(t) {
  return el("div", { class: `tool${t.invocation_error ? " has-error" : ""}` },
    el("div", { class: "tool-head" },
      el("span", { class: "tool-name mono" }, t.tool),
      el("span", { class: `badge ${t.injected ? "injected" : ""}`, title: t.server_url || undefined },
        t.injected ? "injected (MCP)" : "client tool"),
      t.server_url ? el("span", { class: "muted small mono" }, t.server_url) : null,
      t.injected && t.metadata && Number.isInteger(t.metadata.result_size)
        ? el("span", { class: "muted small" }, `result ${t.metadata.result_size} bytes`) : null,
      el("span", { class: "muted small mono right" }, t.provider_tool_call_id || "")),
    textBlock(prettyJson(t.input), "code"),
    t.invocation_error ? el("div", { class: "tool-error", role: "note" }, el("strong", {}, "Error: "), t.invocation_error) : null,
  );
}

function thoughtSection(rec) {
  const thoughts = rec.model_thoughts || [];
  if (!thoughts.length) return null;
  return section(`Thinking (${thoughts.length})`, thoughts.map((t) => textBlock(t.content, "thought")));
}

// ---------------------------------------------------------------- sessions: sessions.js

// ---------------------------------------------------------------- usage

const USAGE_GROUPS = [["user", "#usage-users"], ["model", "#usage-models"], ["client", "#usage-clients"]];

/** Tokens per user, model and client, aggregated by the server over the whole period (the spend API). */
function loadUsage() {
  const form = $("#usage-form");
  const days = Number(form.elements.period.value);
  const since = days ? new Date(Date.now() - days * 86400000).toISOString() : "";
  return loadLatest(state.usage, $("#usage-view"),
    async () => Promise.all(USAGE_GROUPS.map(([group]) => api("/aibridge/spend", { group_by: group, since }))),
    (groups) => renderUsage(groups, form.elements.period.selectedOptions[0].textContent));
}

/** Bar rows from spend rows: biggest token total first. */
function usageBars(results, group) {
  return results.map((r) => {
    const cache = r.cache_read_input_tokens + r.cache_write_input_tokens;
    return { label: String(r[group] || "(unknown)"), requests: r.requests, input: r.input_tokens,
      output: r.output_tokens, cache, total: r.input_tokens + r.output_tokens + cache };
  }).sort((a, b) => b.total - a.total || b.requests - a.requests);
}

function renderUsage(groups, periodLabel) {
  const [byUser] = groups;
  const scope = state.me.role === "member" ? " Members see their own usage only." : "";
  $("#usage-note").textContent = `Every finished interception in the ${periodLabel}, added up by the server.${scope}`;
  const sum = (key) => byUser.results.reduce((n, r) => n + r[key], 0);
  $("#usage-stats").replaceChildren(
    stat("Interceptions", sum("requests")),
    stat("Users", byUser.results.length),
    ...TOKEN_FIELDS.map((key) => stat(TOKEN_LABELS[key], sum(key))),
    el("div", { class: "stat" }, el("div", { class: "stat-value" }, fmtUsd(byUser.total_usd)),
      el("div", { class: "stat-label" }, "Cost")),
  );
  USAGE_GROUPS.forEach(([group, selector], i) => renderBars($(selector), usageBars(groups[i].results, group)));
}

const TOKEN_LABELS = { input_tokens: "Input tokens", output_tokens: "Output tokens",
  cache_read_input_tokens: "Cache read", cache_write_input_tokens: "Cache write" };

function stat(label, value) {
  return el("div", { class: "stat" }, el("div", { class: "stat-value" }, fmtNum(value)), el("div", { class: "stat-label" }, label));
}

/** A horizontal stacked bar per row, scaled to the largest total (widths set through CSSOM, which CSP allows). */
function renderBars(container, rows) {
  if (!rows.length) {
    container.replaceChildren(el("p", { class: "muted" }, "No interceptions in this period."));
    return;
  }
  const max = Math.max(1, ...rows.map((r) => r.total));
  const segment = (kind, value) => {
    const node = el("span", { class: `seg ${kind}`, title: `${kind}: ${fmtNum(value)}` });
    node.style.width = `${((100 * value) / max).toFixed(3)}%`;
    return node;
  };
  // Labels (model names are long) get a line of their own above the bar.
  container.replaceChildren(...rows.map((r) => el("div", { class: "bar-row" },
    el("div", { class: "bar-label", title: r.label },
      el("span", { class: "bar-name" }, r.label),
      el("span", { class: "muted small nowrap" }, `${fmtNum(r.requests)} ${r.requests === 1 ? "request" : "requests"}`),
      el("span", { class: "bar-value num" }, fmtNum(r.total))),
    el("div", { class: "bar-track" }, segment("input", r.input), segment("output", r.output), segment("cache", r.cache)),
  )));
}

// ---------------------------------------------------------------- cost

const SPEND_GROUPS = [["user", "#cost-users", "User"], ["model", "#cost-models", "Model"], ["day", "#cost-days", "Day"],
  ["group", "#cost-groups", "Group"]];

/** Spend from the server (priced when each interception ended), per user, model and day. */
function loadCost() {
  const days = Number($("#cost-form").elements.period.value);
  const since = days ? new Date(Date.now() - days * 86400000).toISOString() : "";
  return loadLatest(state.cost, $("#cost-view"), async () => ({
    groups: await Promise.all(SPEND_GROUPS.map(([group]) => api("/aibridge/spend", { group_by: group, since }))),
    me: await api("/users/me"),
  }), renderCost);
}

function renderCost({ groups, me }) {
  const budget = me.budget;
  $("#cost-budget").textContent = budget
    ? `Your budget: ${fmtUsd(budget.spent_usd)} spent of ${fmtUsd(budget.limit_usd)} this ${budget.period} ` +
      `(resets ${fmtTime(budget.resets_at)}).`
    : "No budget applies to you.";
  const [byUser] = groups;
  const unpriced = byUser.results.reduce((n, r) => n + r.unpriced_requests, 0);
  $("#cost-note").textContent = (state.me.role === "member" ? "Members see their own spend only. " : "") +
    (unpriced ? `${fmtNum(unpriced)} requests used models without a price (not counted; owners can add prices).` : "");
  $("#cost-stats").replaceChildren(
    el("div", { class: "stat" }, el("div", { class: "stat-value", id: "cost-total" }, fmtUsd(byUser.total_usd)),
      el("div", { class: "stat-label" }, "Total cost")),
    stat("Requests", byUser.results.reduce((n, r) => n + r.requests, 0)),
  );
  SPEND_GROUPS.forEach(([group, selector, title], i) => {
    const rows = [...groups[i].results];
    if (group === "day") rows.sort((a, b) => b.day.localeCompare(a.day));
    $(selector).replaceChildren(rows.length
      ? el("table", { class: "data cost-table" },
        el("thead", {}, el("tr", {}, el("th", {}, title), el("th", { class: "num" }, "Requests"),
          el("th", { class: "num" }, "Cost"))),
        el("tbody", {}, ...rows.map((r) => el("tr", {}, el("td", {}, r[group] === null ? "(no group)" : String(r[group])),
          el("td", { class: "num" }, fmtNum(r.requests)), el("td", { class: "num" }, fmtUsd(r.cost_usd))))))
      : el("p", { class: "muted" }, "No spend in this period."));
  });
}

// ---------------------------------------------------------------- start-up

function wire() {
  $("#signin-form").addEventListener("submit", signIn);
  $("#sign-out").addEventListener("click", () => signOut(""));
  $("#banner-close").addEventListener("click", hideBanner);
  $("#filters").addEventListener("submit", applyFilters);
  $("#filters").addEventListener("reset", clearFilters);
  $("#interceptions-older").addEventListener("click", () => pageInterceptions(true));
  $("#interceptions-newer").addEventListener("click", () => pageInterceptions(false));
  $("#sessions-older").addEventListener("click", () => pageSessions(true));
  $("#sessions-newer").addEventListener("click", () => pageSessions(false));
  $("#usage-form").addEventListener("submit", (e) => { e.preventDefault(); loadUsage(); });
  $("#usage-form").addEventListener("change", () => loadUsage());
  $("#cost-form").addEventListener("submit", (e) => { e.preventDefault(); loadCost(); });
  $("#cost-form").addEventListener("change", () => loadCost());
  $("#detail-close").addEventListener("click", closeDetail);
  $("#detail-back").addEventListener("click", popDetail);
  $("#detail-backdrop").addEventListener("click", closeDetail);
  document.addEventListener("keydown", (e) => { if (e.key === "Escape") closeDetail(); });
  window.addEventListener("hashchange", route);
}

wire();
// After the deferred page scripts (tokens.js, users.js…) have added their views to VIEWS.
document.addEventListener("DOMContentLoaded", () => {
  if (token() || window.aibridgeSession.active()) start();    // a pasted token, or the SSO session (session.js)
  else signOut("");
});
