// Minimal shell: recovery sign-in and the signed-in user's workspaces.
const $ = (id) => document.getElementById(id);

async function api(method, path, body) {
  const init = { method, credentials: "same-origin", headers: {} };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  const data = res.status === 204 ? null : await res.json().catch(() => null);
  if (!res.ok) {
    const message = (data && data.message) || `The relay answered ${res.status}.`;
    throw new Error(message);
  }
  return data;
}

function show(section) {
  $("signin").hidden = section !== "signin";
  $("home").hidden = section !== "home";
}

async function refresh() {
  try {
    const me = await api("GET", "/api/v1/me");
    $("user-name").textContent = me.user.name;
    $("recovery-warning").hidden = !me.session.isRecovery;
    const list = $("workspaces");
    list.replaceChildren(...me.memberships.map((m) => {
      const li = document.createElement("li");
      li.textContent = `${m.workspaceName} (${m.role})`;
      return li;
    }));
    show("home");
  } catch {
    show("signin");
  }
}

$("recovery-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("signin-error").textContent = "";
  try {
    await api("POST", "/api/v1/auth/bootstrap", { token: $("recovery-token").value });
    $("recovery-token").value = "";
    await refresh();
  } catch (err) {
    $("signin-error").textContent = err.message;
  }
});

$("signout").addEventListener("click", async () => {
  await api("POST", "/api/v1/auth/logout");
  show("signin");
});

refresh();
