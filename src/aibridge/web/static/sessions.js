"use strict";
/* The Sessions tab: sessions in Coder's shape, each opened as its threads (a human prompt and the
   agent loop after it) with their actions, tool calls and thinking. Loaded before app.js, whose
   helpers (api, el, fields, section, toolCard…) these functions call once the page runs. */

function loadSessions() {
  const s = state.sessions;
  const params = { limit: PAGE_SIZE, offset: s.offset };
  return loadLatest(s, $("#sessions-view"), () => api("/aibridge/sessions", params), (body) => {
    s.count = body.count;
    $("#sessions-table tbody").replaceChildren(...body.sessions.map(sessionRow));
    show($("#sessions-view .empty"), body.sessions.length === 0);
    $("#sessions-count").textContent = body.sessions.length
      ? `${fmtNum(s.offset + 1)}–${fmtNum(s.offset + body.sessions.length)} of ${fmtNum(s.count)} sessions`
      : `0 of ${fmtNum(s.count)} sessions`;
    $("#sessions-newer").disabled = s.offset === 0;
    $("#sessions-older").disabled = s.offset + body.sessions.length >= s.count;
  });
}

function pageSessions(older) {
  const s = state.sessions;
  s.offset = Math.max(0, s.offset + (older ? PAGE_SIZE : -PAGE_SIZE));
  loadSessions();
}

function sessionRow(session) {
  const usage = session.token_usage_summary || {};
  return clickableRow(() => openSession(session.id, false),
    el("td", { class: "nowrap" }, fmtTime(session.last_active_at || session.ended_at)),
    el("td", { class: "nowrap" }, fmtTime(session.started_at)),
    el("td", {}, userLabel(session.initiator)),
    el("td", { class: "nowrap" }, session.client || "—"),
    el("td", { class: "mono" }, (session.models || []).join(", ")),
    el("td", { class: "mono", title: session.id }, truncate(session.id, 18)),
    el("td", { class: "wrap", title: session.last_prompt || "" }, truncate(session.last_prompt || "—", 60)),
    numCell(session.threads),
    numCell(session.interception_count),
    numCell(usage.input_tokens),
    numCell(usage.output_tokens),
    cacheCell(usage.cache_read_input_tokens, usage.cache_write_input_tokens),
  );
}

const THREAD_PAGE = 50;

async function openSession(id, push) {
  let body;
  try {
    body = await api(`/aibridge/sessions/${encodeURIComponent(id)}`, { limit: THREAD_PAGE });
  } catch (err) {
    report(err);
    return;
  }
  (push ? pushDetail : openDetail)(sessionDetail(id, body));
}

/** The next page of threads, appended to the open session's panel. */
async function moreThreads(id, body) {
  let next;
  try {
    next = await api(`/aibridge/sessions/${encodeURIComponent(id)}`,
      { limit: THREAD_PAGE, after_id: body.threads[body.threads.length - 1].id });
  } catch (err) {
    report(err);
    return;
  }
  body.threads.push(...next.threads);
  state.detail[state.detail.length - 1] = sessionDetail(id, body);
  renderDetail();
}

/** An action's interception in full (the export filtered by session; the id picks it). */
async function openAction(sessionId, interceptionId) {
  let body;
  try {
    body = await api("/aibridge/interceptions", { q: `session:${JSON.stringify(sessionId)}`, limit: 1000 });
  } catch (err) {
    report(err);
    return;
  }
  const rec = body.results.find((r) => r.id === interceptionId);
  if (rec) pushDetail(interceptionDetail(rec));
}

function usageText(u) {
  return `${fmtNum(u.input_tokens)} in, ${fmtNum(u.output_tokens)} out, ` +
    `${fmtNum(u.cache_read_input_tokens)} cache read, ${fmtNum(u.cache_write_input_tokens)} cache write`;
}

function sessionDetail(id, body) {
  const total = body.thread_count ?? body.threads.length;
  return () => ({
    title: `Session ${truncate(id, 40)}`,
    content: [
      fields([
        ["Session", mono(body.id)],
        ["User", userLabel(body.initiator)],
        ["Client", body.client],
        ["Providers", (body.providers || []).join(", ")],
        ["Models", mono((body.models || []).join(", "))],
        ["Active", `${fmtTime(body.started_at)} → ${fmtTime(body.ended_at)} (${fmtDuration(body.started_at, body.ended_at)})`],
        ["Threads", fmtNum(total)],
        ["Requests", body.interception_count === undefined ? "" : fmtNum(body.interception_count)],
        ["Tokens", usageText(body.token_usage_summary)],
      ]),
      ...body.threads.map((thread, i) => threadSection(id, thread, i + 1)),
      body.threads.length < total
        ? el("button", { type: "button", class: "more-threads", onclick: () => moreThreads(id, body) },
          `More threads (${fmtNum(body.threads.length)} of ${fmtNum(total)} shown)`)
        : null,
    ],
  });
}

/** One human prompt and the agent loop after it: its actions (one per request), tool calls and thinking. */
function threadSection(sessionId, thread, number) {
  const actions = thread.agentic_actions || [];
  const credential = thread.credential_kind === "byok" ? `user's own key ${thread.credential_hint}` : "";
  return el("section", { class: "detail-section thread", dataset: { thread: thread.id } },
    el("h3", {}, `Thread ${number} · ${fmtTime(thread.started_at).slice(11)} · ${actions.length} ` +
      `action${actions.length === 1 ? "" : "s"}`),
    thread.prompt ? textBlock(thread.prompt, "prompt-text") : el("p", { class: "muted" }, "No prompt was recorded."),
    el("p", { class: "muted small" }, [thread.provider, thread.model, credential, usageText(thread.token_usage)]
      .filter(Boolean).join(" · ")),
    el("div", { class: "table-wrap" }, el("table", { class: "data compact clickable" },
      el("thead", {}, el("tr", {}, ["#", "Model", "Tokens in / out", "Tools", "Thinking"]
        .map((h, i) => el("th", { class: i >= 2 ? "num" : "" }, h)))),
      el("tbody", {}, actions.map((a, i) => clickableRow(() => openAction(sessionId, a.interception_id),
        el("td", {}, String(i + 1)),
        el("td", { class: "mono nowrap" }, a.model),
        el("td", { class: "num" }, `${fmtNum(a.token_usage.input_tokens)} / ${fmtNum(a.token_usage.output_tokens)}`),
        numCell(a.tool_calls.length),
        numCell(a.thinking.length)))))),
    actions.map((a, i) => (a.tool_calls.length || a.thinking.length ? el("div", { class: "action" },
      el("h4", {}, `Action ${i + 1}`),
      a.thinking.map((t) => textBlock(t.text, "thought")),
      a.tool_calls.map(toolCard)) : null)),
  );
}

