// A real OpenID Provider for the SSO tests: the npm package oidc-provider (v9), on a loopback port.
//
//   node provider.mjs PORT USERS_JSON REDIRECT_URI CLIENT_ID CLIENT_SECRET
//
// USERS_JSON maps an account id (what the login form's "login" field takes) to its claims
// ({email, email_verified, preferred_username, name, groups, roles}); it is re-read at every
// sign-in, so a test changes a user's groups by rewriting the file. The development login and
// consent forms (devInteractions) are the provider's own: the tests drive them over HTTP or in
// Chromium. Prints "listening <issuer>" once it serves.
import fs from "node:fs";
import Provider from "oidc-provider";

const [port, usersFile, redirectUri, clientId, clientSecret] = process.argv.slice(2);
const issuer = `http://127.0.0.1:${port}`;

const provider = new Provider(issuer, {
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    redirect_uris: redirectUri.split(","),
    grant_types: ["authorization_code"],
    response_types: ["code"],
    token_endpoint_auth_method: "client_secret_basic",
  }],
  claims: {
    openid: ["sub"],
    email: ["email", "email_verified"],
    profile: ["name", "preferred_username", "groups", "roles"],
  },
  scopes: ["openid", "profile", "email"],
  pkce: { required: () => true },
  cookies: { keys: ["aibridge-test-cookie-key"] },
  features: { devInteractions: { enabled: true } },
  async findAccount(ctx, id) {
    const users = JSON.parse(fs.readFileSync(usersFile, "utf8"));
    if (!Object.hasOwn(users, id)) return undefined;
    return { accountId: id, async claims() { return { sub: id, ...users[id] }; } };
  },
});
provider.on("server_error", (ctx, err) => console.error("server_error", err));
provider.listen(Number(port), "127.0.0.1", () => console.log(`listening ${issuer}`));
