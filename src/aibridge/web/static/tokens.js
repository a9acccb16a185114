/* Self-service tokens (loaded after app.js, whose helpers it uses): the Tokens page (#tokens), where a
 * signed-in user creates, lists and revokes their own API tokens, and the CLI sign-in page
 * (#cli-auth, where /cli-auth leads), which makes a token named "cli" for `aibridge login` to store.
 *
 * A new token's secret is shown once, with the set-up lines the server renders for it (the same
 * code as `aibridge env CLIENT`). As in app.js, data enters the page as text only.
 */
"use strict";

/** Copies `text`; without the Clipboard API (plain http on a remote host) it selects `node` and copies that. */
async function copyText(text, node, button) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    const range = document.createRange();
    range.selectNodeContents(node);
    getSelection().removeAllRanges();
    getSelection().addRange(range);
    document.execCommand("copy");
  }
  button.textContent = "Copied";
  setTimeout(() => { button.textContent = "Copy"; }, 2000);
}

/** A block of text to copy: the secret or a client's set-up lines. */
function copyBlock(text, cls) {
  const pre = el("pre", { class: `text copyable ${cls || ""}` }, text);
  const button = el("button", { type: "button", class: "ghost copy" }, "Copy");
  button.addEventListener("click", () => copyText(text, pre, button));
  return el("div", { class: "copy-block" }, pre, button);
}

function tokenStatus(key) {
  if (key.revoked) return el("span", { class: "badge bad" }, "revoked");
  if (new Date(key.expires_at) <= new Date()) return el("span", { class: "badge" }, "expired");
  return el("span", { class: "badge ok" }, "active");
}

const isLive = (key) => !key.revoked && new Date(key.expires_at) > new Date();

/** Token rows with a Revoke button on the live ones; `userRef` is "me" or a user's id. */
function tokenRows(keys, userRef, reload) {
  return keys.map((key) => el("tr", { dataset: { id: key.id } },
    el("td", {}, key.token_name),
    el("td", { class: "mono" }, key.id),
    el("td", { class: "nowrap" }, fmtTime(key.created_at)),
    el("td", { class: "nowrap last-used" }, key.last_used_at ? fmtTime(key.last_used_at) : "never"),
    el("td", { class: "nowrap" }, fmtTime(key.expires_at)),
    el("td", {}, tokenStatus(key)),
    el("td", {}, isLive(key) ? el("button", {
      type: "button", class: "ghost revoke",
      onclick: async () => {
        try {
          await apiSend("DELETE", `/users/${encodeURIComponent(userRef)}/keys/${encodeURIComponent(key.id)}`);
          await reload();
        } catch (err) {
          report(err);
        }
      },
    }, "Revoke") : ""),
  ));
}

function tokenTable(id) {
  return el("table", { id, class: "data" },
    el("thead", {}, el("tr", {}, ["Name", "ID", "Created", "Last used", "Expires", "Status", ""]
      .map((h) => el("th", {}, h)))),
    el("tbody"));
}

// ---------------------------------------------------------------- the Tokens page

const tokensState = { ticket: 0 };

function buildTokensView() {
  const form = el("form", { id: "token-form", class: "filters", autocomplete: "off" },
    el("label", {}, "Name ", el("input", { name: "token_name", required: true, maxlength: 128, placeholder: "laptop" })),
    el("label", {}, "Lifetime ", el("input", { name: "lifetime", value: "30d", placeholder: "e.g. 7d, 720h" })),
    el("div", { class: "filter-buttons" }, el("button", { type: "submit", class: "primary" }, "Create token")));
  form.addEventListener("submit", createToken);
  return el("section", { id: "tokens-view", class: "view", hidden: true },
    form,
    el("div", { id: "token-created", class: "card created", hidden: true }),
    el("div", { class: "table-wrap" }, tokenTable("tokens-table"),
      el("p", { class: "empty", hidden: true }, "No tokens yet.")));
}

function loadTokens() {
  return loadLatest(tokensState, $("#tokens-view"), () => api("/users/me/keys/tokens"), (keys) => {
    $("#tokens-table tbody").replaceChildren(...tokenRows(keys.slice().reverse(), "me", loadTokens));
    show($("#tokens-view .empty"), keys.length === 0);
  });
}

async function createToken(event) {
  event.preventDefault();
  const form = event.target;
  const body = { token_name: form.token_name.value.trim() };
  if (form.lifetime.value.trim()) body.lifetime = form.lifetime.value.trim();
  try {
    const made = await apiSend("POST", "/users/me/keys/tokens", body);
    form.token_name.value = "";
    showCreated(made);
    hideBanner();
    await loadTokens();
  } catch (err) {
    report(err);
  }
}

/** The secret, shown once, and each client's set-up lines with it. */
function showCreated(made) {
  const box = $("#token-created");
  box.replaceChildren(
    el("h2", {}, `Token “${made.token_name}” created`),
    el("p", { class: "hint" }, "Copy it now: it is not shown again. It expires ", fmtTime(made.expires_at), "."),
    copyBlock(made.key, "secret"),
    ...(made.setup || []).map((s) => el("section", { class: "setup", dataset: { client: s.id } },
      el("h3", {}, s.title), copyBlock(s.text))),
    el("button", { type: "button", class: "ghost", onclick: () => { show(box, false); box.replaceChildren(); } },
      "Done"));
  show(box, true);
}

// ---------------------------------------------------------------- the CLI sign-in page

const cliAuth = { made: null, user: null };

function buildCliAuthView() {
  return el("section", { id: "cli-auth-view", class: "view", hidden: true },
    el("div", { class: "card cli-auth" },
      el("h1", {}, "Sign in the AI Bridge CLI"),
      el("p", {}, "Copy this token and paste it where ", el("code", {}, "aibridge login"), " waits for it."),
      el("div", { id: "cli-auth-token" }, el("p", { class: "muted" }, "Creating a token…")),
      el("p", { class: "hint" }, "The token is named “cli”; revoke it on the Tokens page or with ",
        el("code", {}, "aibridge logout"), ".")));
}

/** One token per visit of the page: a re-render (sign-in, hash change) shows the same one again. */
async function loadCliAuth() {
  const slot = $("#cli-auth-token");
  try {
    if (!cliAuth.made || cliAuth.user !== state.me.id) {
      cliAuth.made = await apiSend("POST", "/users/me/keys/tokens", { token_name: "cli" });
      cliAuth.user = state.me.id;
    }
    slot.replaceChildren(copyBlock(cliAuth.made.key, "secret"));
  } catch (err) {
    slot.replaceChildren(el("p", { class: "error" }, describe(err)));
    report(err);
  }
}

$("main").append(buildTokensView(), buildCliAuthView());
$("#tabs").append(el("a", { href: "#tokens", dataset: { view: "tokens" } }, "Tokens"));
VIEWS.tokens = loadTokens;
VIEWS["cli-auth"] = loadCliAuth;
