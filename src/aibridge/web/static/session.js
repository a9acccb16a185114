/*
 * The browser session (single sign-on) beside app.js's token-paste sign-in.
 *
 * After "Sign in with SSO" the server holds the session in an HttpOnly cookie that this page never
 * sees; the readable csrf_token cookie only says a session exists, and every state-changing request
 * echoes it in X-CSRF-Token (double submit). fetch is wrapped once here, so every page's writes
 * carry it without knowing. Sign-out asks the server to revoke the session's token.
 */
"use strict";

const SESSION_API = "/api/v2/users";

function csrfToken() {
  const found = document.cookie.split("; ").find((part) => part.startsWith("csrf_token="));
  return found ? decodeURIComponent(found.slice("csrf_token=".length)) : "";
}

/** True while the server's session cookie is (probably) there: app.js then starts without a pasted token. */
window.aibridgeSession = { active: () => csrfToken() !== "" };

const plainFetch = window.fetch.bind(window);
window.fetch = (input, init = {}) => {
  const method = (init.method || (input instanceof Request ? input.method : "GET")).toUpperCase();
  const url = new URL(input instanceof Request ? input.url : String(input), location.href);
  const csrf = csrfToken();
  if (csrf && url.origin === location.origin && !["GET", "HEAD", "OPTIONS"].includes(method)) {
    const headers = new Headers(init.headers || (input instanceof Request ? input.headers : undefined));
    if (!headers.has("X-CSRF-Token")) headers.set("X-CSRF-Token", csrf);
    init = { ...init, headers };
  }
  return plainFetch(input, init);
};

function ssoElement(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text) node.textContent = text;
  return node;
}

/** Adds "Sign in with SSO" when the server has an identity provider; hides token paste when disabled. */
async function offerSignInMethods() {
  let methods;
  try {
    const response = await plainFetch(`${SESSION_API}/authmethods`, { cache: "no-store" });
    if (!response.ok) return;
    methods = await response.json();
  } catch {
    return;           // the sign-in box still works with a token
  }
  const box = document.querySelector("#signin-view");
  if (!methods.password.enabled) {
    for (const node of box.querySelectorAll("#signin-form, #signin-view > p:not(.error)")) node.hidden = true;
  }
  if (!methods.oidc.enabled) return;
  const area = ssoElement("div", { id: "sso", class: "sso" });
  const link = ssoElement("a", { id: "sso-sign-in", class: "button primary",
    href: `${SESSION_API}/oidc/login?redirect=${encodeURIComponent(location.pathname + location.hash)}` });
  if (methods.oidc.iconUrl) link.append(ssoElement("img", { src: methods.oidc.iconUrl, alt: "", width: "16", height: "16" }));
  link.append(document.createTextNode(methods.oidc.signInText));
  area.append(link);
  if (!methods.oidc.available) {
    link.setAttribute("aria-disabled", "true");
    link.removeAttribute("href");
    area.append(ssoElement("p", { id: "sso-unavailable", class: "error", role: "alert" },
      `SSO is unavailable until the identity provider answers: ${methods.oidc.message}`));
  }
  box.querySelector("h1").after(area);
}

/** Ends the server's session too (app.js clears the page). */
function endSessionOnSignOut() {
  document.querySelector("#sign-out").addEventListener("click", () => {
    if (csrfToken()) plainFetch(`${SESSION_API}/logout`, { method: "POST", headers: { "X-CSRF-Token": csrfToken() } });
  });
}

offerSignInMethods();
endSessionOnSignOut();
