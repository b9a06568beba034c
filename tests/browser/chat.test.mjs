// Chat in real headless Chromium against the fake LLM (60 ms per token): text arrives while the
// answer is still generating, Stop ends it, and a reload mid-answer picks the stream up again.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { base, launch, openPage, register } from "./browser.mjs";

let browser;
const problems = [];
before(async () => { browser = await launch(); });
after(async () => browser?.close());

const answers = (page) => page.locator("#messages article.msg.assistant");
const lastAnswer = (page) => answers(page).last();

async function send(page, text) {
  const box = page.getByLabel("Message");
  await box.fill(text);
  await box.press("Enter");
}

/** Waits until the last answer shows some text while it is still generating. */
async function waitForPartialText(page) {
  await page.waitForFunction(() => {
    const all = document.querySelectorAll("#messages article.msg.assistant");
    const last = all[all.length - 1];
    return last && last.classList.contains("streaming") && last.querySelector(".msg-body").textContent.trim().length > 10;
  });
}

test("text streams in, Stop ends it, a reload mid-answer continues it", async () => {
  const page = await openPage(browser, problems);
  await register(page, `chat-${Date.now()}@example.com`, "chat pass 1");
  await page.goto(`${base}/projects`);
  await page.getByLabel("Name").fill("Chatty");
  await page.getByRole("button", { name: "Create project" }).click();
  await page.getByRole("heading", { name: "Chatty", level: 1 }).waitFor();
  await page.getByRole("button", { name: "Chat", exact: true }).click();
  await page.getByRole("heading", { name: "New chat" }).waitFor();
  await page.getByText("with Assistant").waitFor();

  // Shift+Enter makes a new line and sends nothing; the box says so (it does not without JS).
  const box = page.getByLabel("Message");
  assert.match(await box.getAttribute("placeholder"), /Enter sends, Shift\+Enter adds a line/);
  await box.fill("line one");
  await box.press("Shift+Enter");
  await box.pressSequentially("line two");
  assert.equal(await box.inputValue(), "line one\nline two");
  assert.equal(await page.locator("#messages article").count(), 0);

  // Enter sends; the answer's text shows up before it is complete.
  await box.press("Enter");
  await page.locator("#messages article.msg.user", { hasText: "line one" }).waitFor();
  await waitForPartialText(page);
  const partial = await lastAnswer(page).locator(".msg-body").textContent();
  assert.ok(await lastAnswer(page).evaluate((el) => el.classList.contains("streaming")), "still generating");
  // One sign of work, the footer's typing dots: no spinner of Pico's above the text, where it
  // took a line of its own that vanished (moving the text up) when the answer ended.
  assert.equal(await lastAnswer(page).evaluate((el) => getComputedStyle(el, "::before").content), "none");
  await page.locator("#messages article.msg.assistant.complete").waitFor();
  const full = (await lastAnswer(page).locator(".msg-body").innerText()).trim();
  assert.ok(full.length > partial.trim().length, "more text arrived after the first look");
  assert.match(await lastAnswer(page).locator(".msg-meta").innerText(), /gpt-4o-mini · openai/);
  assert.match(page.url(), /\/conversations\//, "the address became the conversation's");
  assert.equal(await box.inputValue(), "", "the composer was cleared");
  assert.equal(await page.locator("#conversation-list li").count(), 1, "the sidebar lists the conversation");

  // Stop: the answer ends at once, its partial text stays, marked stopped.
  await send(page, "and another");
  await waitForPartialText(page);
  await lastAnswer(page).getByRole("button", { name: "Stop" }).click();
  await page.locator("#messages article.msg.assistant.stopped").waitFor();
  const stopped = (await lastAnswer(page).locator(".msg-body").innerText()).trim();
  assert.ok(stopped.length > 0 && stopped.length < full.length, `partial kept (${stopped.length} of ${full.length})`);
  await assert.doesNotReject(lastAnswer(page).getByText("Stopped.").waitFor());

  // Reload mid-answer: the text so far is there and the rest streams in, without repeats.
  await send(page, "third time");
  await waitForPartialText(page);
  await page.reload();
  await page.locator("#messages article.msg.assistant").nth(2).waitFor();
  await page.locator("#messages article.msg.assistant.complete").nth(1).waitFor();
  const third = (await answers(page).nth(2).locator(".msg-body").innerText()).trim();
  assert.equal(third, full, "the reloaded answer finished with exactly the full text");
  assert.equal(await answers(page).count(), 3);

  assert.deepEqual(problems, [], "no console errors or CSP violations");
});

test("scrolling up loads earlier messages a page at a time, keeping the reader's place", async () => {
  const page = await openPage(browser, problems);
  const email = `scroll-${Date.now()}@example.com`;
  const password = "scroll pass 1";
  await register(page, email, password);
  // A conversation of 122 messages, stored in one request: the OpenAI-compatible API keeps the
  // turns a client sends with its first message (120 here), then the message and its answer.
  const login = await (await fetch(`${base}/api/auth/login`, {
    method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ email, password }),
  })).json();
  const auth = { authorization: `Bearer ${login.access_token}`, "content-type": "application/json" };
  const project = await (await fetch(`${base}/api/projects`, {
    method: "POST", headers: auth, body: JSON.stringify({ name: "Long talk" }),
  })).json();
  const [agent] = await (await fetch(`${base}/api/projects/${project.id}/agents`, { headers: auth })).json();
  const earlier = Array.from({ length: 120 }, (_, i) => ({
    role: i % 2 ? "assistant" : "user",
    content: i % 2 ? `Answer number ${i}.\n\n- a point\n- another` : `Question number ${i}?`,
  }));
  const completion = await fetch(`${base}/v1/chat/completions`, {
    method: "POST", headers: auth,
    body: JSON.stringify({ model: agent.id, messages: [...earlier, { role: "user", content: "And the last?" }] }),
  });
  assert.equal(completion.status, 200);
  const conversation = completion.headers.get("x-confab-conversation-id");

  // The page opens at the newest 50, scrolled to the bottom.
  await page.goto(`${base}/conversations/${conversation}`);
  const bubbles = page.locator("#messages article.msg");
  const said = (text) => page.locator("#messages").getByText(text, { exact: true });
  assert.equal(await bubbles.count(), 50);
  const oldestShown = page.locator("#messages article.msg").first();
  const oldestId = await oldestShown.getAttribute("id");
  assert.ok(!(await said("Question number 70?").isVisible()), "older ones are not there yet");

  // Scrolling to the top brings the 50 before them, and the reader stays where they were: the
  // message that was first is still on the screen, so nothing more loads by itself.
  await page.mouse.wheel(0, -100000);
  await said("Question number 70?").waitFor();
  assert.equal(await bubbles.count(), 100);
  const box = await page.locator(`#${oldestId}`).boundingBox();
  const viewport = page.viewportSize();
  assert.ok(box.y >= 0 && box.y < viewport.height, `the message that was first stays in view (at ${box.y})`);

  // Up once more: the rest, and no link to earlier ones is left.
  await page.mouse.wheel(0, -100000);
  await said("Question number 0?").waitFor();
  assert.equal(await bubbles.count(), 122);
  assert.equal(await page.locator("#messages a.earlier").count(), 0);
  assert.deepEqual(problems, [], "no console errors or CSP violations");
});
