/* The Providers page (#providers; owners and auditors; loaded after app.js, whose helpers it uses): every
 * provider with its status (and why it cannot be used), source, type and masked keys. Owners create
 * providers, enable or disable them, add and remove keys and delete them; a provider from the
 * environment or YAML (source "config") is read-only here: it changes where it is defined. Changes
 * apply on every worker and replica without a restart. A key typed here is sent once and only ever
 * comes back masked.
 */
"use strict";

const providersState = { ticket: 0 };
// The types a provider can be created with (docs/providers.md); the server checks everything else.
const PROVIDER_TYPES = ["openai", "anthropic", "openai-compat", "azure", "google", "openrouter", "vercel", "copilot"];
const PROVIDER_STATUS_CLASS = { enabled: "ok", error: "bad", disabled: "" };
const CONFIG_NOTE = "Defined in the server's configuration (environment or YAML): change it there.";

const providerPath = (provider) => `/ai/providers/${encodeURIComponent(provider.id)}`;
const canReadProviders = () => Boolean(state.me) && ["owner", "auditor"].includes(state.me.role);

function buildProvidersView() {
  const create = el("form", { id: "provider-create", class: "filters", autocomplete: "off", hidden: true },
    el("label", {}, "Type", el("select", { name: "type" }, PROVIDER_TYPES.map((t) => el("option", { value: t }, t)))),
    el("label", {}, "Name", el("input", { name: "name", placeholder: "e.g. openai-eu", required: true })),
    el("label", {}, "Base URL", el("input", { name: "base_url", placeholder: "the type's default" })),
    el("label", {}, "API key", el("input", { name: "api_key", type: "password", autocomplete: "off",
      spellcheck: "false", placeholder: "more can be added later" })),
    el("label", {}, "Display name", el("input", { name: "display_name" })),
    el("div", { class: "filter-buttons" }, el("button", { type: "submit", class: "primary" }, "Create")));
  create.addEventListener("submit", (event) => {
    event.preventDefault();
    const field = (name) => create.elements[name].value.trim();
    const key = field("api_key");
    const body = { type: field("type"), name: field("name"), base_url: field("base_url"),
      display_name: field("display_name"), api_keys: key ? [key] : [] };
    changeProvider(async () => {
      await apiSend("POST", "/ai/providers", body);
      create.reset();
    });
  });
  return el("section", { id: "providers-view", class: "view", hidden: true },
    create,
    el("p", { class: "muted small" }, "A disabled provider's routes answer 403; one in error answers 503 with the ",
      "reason. Providers created here are stored with their keys encrypted; those from the environment or YAML ",
      "are read-only here."),
    el("div", { class: "table-wrap" },
      el("table", { id: "providers-table", class: "data" },
        el("thead", {}, el("tr", {}, ["Provider", "Type", "Source", "Status", "Keys", "Base URL", ""]
          .map((h) => el("th", {}, h)))),
        el("tbody")),
      el("p", { class: "empty", hidden: true }, "No provider yet.")));
}

function loadProviders() {
  if (!canReadProviders()) {
    showBanner("Only owners and auditors see the providers.");
    return Promise.resolve();
  }
  return loadLatest(providersState, $("#providers-view"), () => api("/ai/providers"), (body) => {
    const owner = state.me.role === "owner";
    show($("#provider-create"), owner);
    $("#providers-table tbody").replaceChildren(...body.providers.map((p) => providerRow(p, owner)));
    show($("#providers-view .empty"), body.count === 0);
  });
}

/** Runs a change, then reloads the list; a refusal shows in the banner (a 401/403 signs out, as everywhere). */
function changeProvider(work) {
  return changeThenReload(work, loadProviders, "#providers-view");
}

/** PATCHes the provider's keys: the ids of those that stay, then the new ones (the server deletes the rest). */
function patchKeys(provider, kept, added) {
  const keys = kept.map((k) => ({ id: k.id })).concat(added.map((key) => ({ api_key: key })));
  return changeProvider(() => apiSend("PATCH", providerPath(provider), { api_keys: keys }));
}

function keysCell(provider, editable) {
  const list = el("ul", { class: "keys" }, ...provider.api_keys.map((k) => el("li", {},
    el("span", { class: "mono", title: k.created_at ? `added ${fmtTime(k.created_at)}` : undefined }, k.masked),
    editable ? el("button", { type: "button", class: "ghost danger small-button", dataset: { removeKey: k.masked },
      "aria-label": `Remove key ${k.masked}`,
      onclick: () => patchKeys(provider, provider.api_keys.filter((other) => other.id !== k.id), []) }, "Remove")
      : null)));
  if (!provider.api_keys.length) list.append(el("li", { class: "muted" }, "none"));
  if (!editable) return el("td", {}, list);
  const add = el("form", { class: "key-add", autocomplete: "off" },
    el("input", { name: "api_key", type: "password", autocomplete: "off", spellcheck: "false", placeholder: "new key",
      "aria-label": `New key for ${provider.name}`, required: true }),
    el("button", { type: "submit", class: "ghost" }, "Add key"));
  add.addEventListener("submit", (event) => {
    event.preventDefault();
    const key = add.elements.api_key.value.trim();
    if (key) patchKeys(provider, provider.api_keys, [key]);
  });
  return el("td", {}, list, add);
}

/** Delete asks twice: the first click turns the button into "Confirm delete". */
function providerDeleteButton(provider) {
  const button = el("button", { type: "button", class: "ghost danger delete" }, "Delete");
  button.addEventListener("click", () => {
    if (button.dataset.armed) {
      changeProvider(() => apiSend("DELETE", providerPath(provider)));
    } else {
      button.dataset.armed = "1";
      button.textContent = "Confirm delete";
    }
  });
  return button;
}

function providerActions(provider, editable) {
  if (provider.source === "config") return el("td", { class: "muted small wrap" }, CONFIG_NOTE);
  if (!editable) return el("td", {});
  const toggle = el("button", { type: "button", class: `ghost ${provider.enabled ? "disable" : "enable"}`,
    onclick: () => changeProvider(() => apiSend("PATCH", providerPath(provider), { enabled: !provider.enabled })),
  }, provider.enabled ? "Disable" : "Enable");
  return el("td", { class: "nowrap actions" }, toggle, providerDeleteButton(provider));
}

function providerRow(provider, owner) {
  const editable = owner && provider.source === "api";
  return el("tr", { dataset: { provider: provider.name } },
    el("td", {}, el("strong", {}, provider.name),
      provider.display_name ? el("div", { class: "muted small" }, provider.display_name) : null),
    el("td", {}, provider.type),
    el("td", {}, el("span", { class: "source", title: provider.source === "config" ? CONFIG_NOTE : "created through "
      + "the API, the CLI or this page" }, provider.source)),
    el("td", { class: "wrap" },
      el("span", { class: `badge status ${PROVIDER_STATUS_CLASS[provider.status] || ""}` }, provider.status),
      provider.error ? el("div", { class: "error small provider-error" }, provider.error) : null),
    keysCell(provider, editable),
    el("td", { class: "mono break" }, provider.base_url || "—"),
    providerActions(provider, editable));
}

$("main").append(buildProvidersView());
VIEWS.providers = loadProviders;
document.addEventListener("aibridge:signed-in", (event) => {
  show($("#providers-tab"), ["owner", "auditor"].includes(event.detail.role));
});
