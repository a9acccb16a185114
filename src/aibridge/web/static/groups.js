"use strict";
// The Groups page (owners): create, rename and delete groups, add and remove members.
// Loaded before app.js; its functions run only after app.js has defined what they use
// ($, el, api, ApiError, token, API, state, loadLatest, report, hideBanner).

const groupsSlot = { ticket: 0, open: "" };

const groupPath = (name) => `/groups/${encodeURIComponent(name)}`;

function loadGroups() {
  return loadLatest(groupsSlot, $("#groups-view"), async () => {
    const listed = await api("/groups");
    const open = listed.groups.find((g) => g.name === groupsSlot.open);
    return { listed, detail: open ? await api(groupPath(open.name)) : null };
  }, renderGroups);
}

/** Runs a change, then reloads the page's data; a refusal is shown in the banner. */
function changeGroup(work) {
  return changeThenReload(work, loadGroups);
}

function renderGroups({ listed, detail }) {
  const owner = state.me.role === "owner";
  show($("#group-create"), owner);
  $("#groups-list").replaceChildren(listed.groups.length
    ? el("table", { class: "data clickable", id: "groups-table" },
      el("thead", {}, el("tr", {}, el("th", {}, "Group"), el("th", {}, "Display name"),
        el("th", { class: "num" }, "Members"), el("th", {}, "Source"))),
      el("tbody", {}, ...listed.groups.map((g) => el("tr", {
        dataset: { group: g.name },
        onclick: () => { groupsSlot.open = g.name; loadGroups(); },
      }, el("td", {}, g.name), el("td", {}, g.display_name), el("td", { class: "num" }, String(g.total_member_count)),
      el("td", {}, g.source)))))
    : el("p", { class: "muted" }, "No groups yet."));
  $("#group-detail").replaceChildren(...(detail ? groupDetail(detail, owner) : []));
}

function groupDetail(group, owner) {
  const members = el("ul", { class: "members" }, ...group.members.map((m) => el("li", {},
    el("span", {}, m.username),
    owner ? el("button", { type: "button", class: "ghost", dataset: { remove: m.username },
      onclick: () => changeGroup(() => apiSend("PATCH", groupPath(group.name), { remove_users: [m.username] })) },
    "Remove") : null)));
  if (!owner) return [el("h2", {}, group.display_name || group.name), members];
  const add = el("form", { class: "filters", id: "group-add" },
    el("label", {}, "Add member", el("input", { name: "user", placeholder: "username", required: true })),
    el("div", { class: "filter-buttons" }, el("button", { type: "submit", class: "primary" }, "Add")));
  add.addEventListener("submit", (e) => {
    e.preventDefault();
    const user = add.elements.user.value.trim();
    if (user) changeGroup(() => apiSend("PATCH", groupPath(group.name), { add_users: [user] }));
  });
  const rename = el("form", { class: "filters", id: "group-rename" },
    el("label", {}, "Name", el("input", { name: "name", value: group.name, required: true })),
    el("label", {}, "Display name", el("input", { name: "display_name", value: group.display_name })),
    el("div", { class: "filter-buttons" }, el("button", { type: "submit" }, "Save"),
      el("button", { type: "button", class: "ghost", id: "group-delete", onclick: () => {
        groupsSlot.open = "";
        changeGroup(() => apiSend("DELETE", groupPath(group.name)));
      } }, "Delete group (with its budget and model rule)")));
  rename.addEventListener("submit", (e) => {
    e.preventDefault();
    const name = rename.elements.name.value.trim();
    const body = { name, display_name: rename.elements.display_name.value.trim() };
    changeGroup(async () => { await apiSend("PATCH", groupPath(group.name), body); groupsSlot.open = name; });
  });
  return [el("h2", {}, group.name), rename, el("h3", {}, `Members (${group.members.length})`), members, add];
}

function wireGroups() {
  $("#group-create").addEventListener("submit", (e) => {
    e.preventDefault();
    const form = e.target;
    const body = { name: form.elements.name.value.trim(), display_name: form.elements.display_name.value.trim() };
    changeGroup(async () => { await apiSend("POST", "/groups", body); groupsSlot.open = body.name; form.reset(); });
  });
}

document.addEventListener("DOMContentLoaded", wireGroups);
