/* The Users page for owners (#users; loaded after app.js and tokens.js, whose helpers it uses): list
 * and search users, change a role, suspend, activate, delete, and see each user's groups and
 * tokens (revocable). Every change applies at once on the server: the page then reloads the list.
 */
"use strict";

const usersState = { ticket: 0, q: "" };
const ROLE_NAMES = ["owner", "auditor", "member"];

function buildUsersView() {
  const form = el("form", { id: "users-search", class: "filters", autocomplete: "off" },
    el("label", {}, "Search ", el("input", { name: "q", type: "search", placeholder: "username, e-mail or name" })),
    el("div", { class: "filter-buttons" }, el("button", { type: "submit", class: "primary" }, "Search")));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    usersState.q = form.q.value.trim();
    loadUsers();
  });
  return el("section", { id: "users-view", class: "view", hidden: true },
    form,
    el("div", { class: "table-meta" }, el("span", { id: "users-count", class: "muted" })),
    el("div", { class: "table-wrap" },
      el("table", { id: "users-table", class: "data" },
        el("thead", {}, el("tr", {}, ["User", "E-mail", "Role", "Status", "Groups", "Created", ""]
          .map((h) => el("th", {}, h)))),
        el("tbody")),
      el("p", { class: "empty", hidden: true }, "No user matches.")));
}

function loadUsers() {
  if (!state.me || state.me.role !== "owner") {
    showBanner("Only owners manage users.");
    return Promise.resolve();
  }
  return loadLatest(usersState, $("#users-view"), () => api("/users", { q: usersState.q }), (body) => {
    $("#users-table tbody").replaceChildren(...body.users.map(userRow));
    $("#users-count").textContent = `${body.count} user${body.count === 1 ? "" : "s"}`;
    show($("#users-view .empty"), body.count === 0);
  });
}

/** Runs a change, then reloads the list; an error shows in the banner (a 403 signs out, as everywhere). */
function changeUser(work) {
  return changeThenReload(work, loadUsers, "#users-view");
}

const userPath = (user) => `/users/${encodeURIComponent(user.id)}`;

function roleSelect(user, self) {
  const select = el("select", { class: "role", disabled: self, "aria-label": `Role of ${user.username}` },
    ROLE_NAMES.map((r) => el("option", { value: r, selected: r === user.role }, r)));
  select.addEventListener("change", () => changeUser(() =>
    apiSend("PUT", `${userPath(user)}/roles`, { roles: [select.value] })));
  return select;
}

/** Delete asks twice: the first click turns the button into "Confirm delete". */
function deleteButton(user) {
  const button = el("button", { type: "button", class: "ghost danger delete" }, "Delete");
  button.addEventListener("click", () => {
    if (button.dataset.armed) {
      changeUser(() => apiSend("DELETE", userPath(user)));
    } else {
      button.dataset.armed = "1";
      button.textContent = "Confirm delete";
    }
  });
  return button;
}

function userRow(user) {
  const self = state.me && user.id === state.me.id;
  const suspended = user.status === "suspended";
  const actions = [el("button", {
    type: "button", class: "ghost tokens", onclick: () => openUserTokens(user),
  }, "Tokens")];
  if (!self) {
    actions.push(el("button", {
      type: "button", class: `ghost ${suspended ? "activate" : "suspend"}`,
      onclick: () => changeUser(() => apiSend("POST", `${userPath(user)}/status/${suspended ? "activate" : "suspend"}`)),
    }, suspended ? "Activate" : "Suspend"), deleteButton(user));
  }
  return el("tr", { dataset: { username: user.username } },
    el("td", {}, el("strong", {}, user.username), user.name ? el("div", { class: "muted small" }, user.name) : ""),
    el("td", {}, user.email || "—"),
    el("td", {}, roleSelect(user, self)),
    el("td", {}, el("span", { class: `badge status ${suspended ? "bad" : "ok"}` }, user.status)),
    el("td", { class: "groups" }, (user.groups || []).length ? user.groups.map((g) => el("span", { class: "badge" }, g)) : "—"),
    el("td", { class: "nowrap" }, fmtTime(user.created_at)),
    el("td", { class: "nowrap actions" }, actions));
}

/** A user's tokens in the side panel, each live one revocable. */
async function openUserTokens(user) {
  const reload = async () => {
    let keys;
    try {
      keys = await api(`${userPath(user)}/keys/tokens`);
    } catch (err) {
      report(err);
      return;
    }
    const table = tokenTable("user-tokens-table");
    table.tBodies[0].replaceChildren(...tokenRows(keys.slice().reverse(), user.id, reload));
    const render = () => ({
      title: `Tokens of ${user.username}`,
      content: [
        fields([["Groups", (user.groups || []).join(", ") || "none"], ["Role", user.role], ["Status", user.status]]),
        section(`Tokens (${keys.length})`, el("div", { class: "table-wrap" }, table)),
      ],
    });
    openDetail(render);
  };
  await reload();
}

$("main").append(buildUsersView());
$("#tabs").append(el("a", { href: "#users", dataset: { view: "users" }, hidden: true, id: "users-tab" }, "Users"));
VIEWS.users = loadUsers;
document.addEventListener("aibridge:signed-in", (event) => {
  show($("#users-tab"), event.detail.role === "owner");
});
