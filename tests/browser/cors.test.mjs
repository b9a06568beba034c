// CORS as a browser enforces it: a page on an allowed origin (a front end on another port)
// registers, signs in, lists projects and reads a streamed answer with fetch; a page on an
// origin that is not allowed is blocked by the browser.
import { test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { base, launch, openPage } from "./browser.mjs";

/** A one-page site on 127.0.0.1:`port` (0: any free port). */
function frontEnd(port) {
  const server = http.createServer((_, res) => {
    res.writeHead(200, { "content-type": "text/html" });
    res.end("<!doctype html><title>front end</title><p>another origin</p>");
  });
  return new Promise((resolve) => server.listen(port, "127.0.0.1", () => resolve(server)));
}

/** Runs in the page: the whole flow a front end on another origin goes through. */
async function useTheApi({ api, email, password }) {
  const json = { "content-type": "application/json" };
  const registered = await fetch(`${api}/api/auth/register`, {
    method: "POST", headers: json, body: JSON.stringify({ email, password }),
  });
  const login = await fetch(`${api}/api/auth/login`, {
    method: "POST", headers: json, body: JSON.stringify({ email, password }),
  });
  const { access_token: token } = await login.json();
  const auth = { authorization: `Bearer ${token}` };
  const projects = await (await fetch(`${api}/api/projects`, { headers: auth })).json();
  let project = projects[0];
  if (!project) {
    project = await (await fetch(`${api}/api/projects`, {
      method: "POST", headers: { ...auth, ...json }, body: JSON.stringify({ name: "From afar" }),
    })).json();
  }
  const agents = await (await fetch(`${api}/api/projects/${project.id}/agents`, { headers: auth })).json();
  const answer = await fetch(`${api}/api/chat/agents/${agents[0].id}`, {
    method: "POST", headers: { ...auth, ...json }, body: JSON.stringify({ message: "hello from another origin" }),
  });
  // Read the event stream as it comes.
  const reader = answer.body.getReader();
  const decoder = new TextDecoder();
  let events = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    events += decoder.decode(value, { stream: true });
    if (events.includes('"done":true')) break;
  }
  const text = events.split("\n")
    .filter((line) => line.startsWith("data: "))
    .map((line) => JSON.parse(line.slice(6)))
    .map((event) => event.text).join("");
  return { registered: registered.status, projects: Array.isArray(projects), text, done: events.includes('"status":"complete"') };
}

test("a page on an allowed origin uses the API; another origin is blocked", async () => {
  const allowed = await frontEnd(Number(process.env.CORS_ALLOWED_PORT));
  const other = await frontEnd(0);
  const browser = await launch();
  const problems = [];
  try {
    const page = await openPage(browser, problems);
    await page.goto(`http://127.0.0.1:${allowed.address().port}/`);
    const got = await page.evaluate(useTheApi, {
      api: base, email: `cors-${Date.now()}@example.com`, password: "cors journey pass 1",
    });
    assert.equal(got.registered, 201);
    assert.ok(got.projects);
    assert.ok(got.done, "the answer completed");
    assert.ok(got.text.length > 0, "the streamed text was read");
    assert.deepEqual(problems, []);

    await page.goto(`http://127.0.0.1:${other.address().port}/`);
    const blocked = await page.evaluate(async (api) => {
      try {
        await fetch(`${api}/api/projects`, { headers: { authorization: "Bearer x" } });
        return "read";
      } catch (error) {
        return error.name;
      }
    }, base);
    assert.equal(blocked, "TypeError", "the browser refuses the answer");
  } finally {
    await browser.close();
    allowed.close();
    other.close();
  }
});
