// Answers in Markdown, in real headless Chromium against the fake LLM (60 ms per token; a message
// that starts with "echo:" is answered with the rest of it): formatted while it streams, code
// highlighted with a Copy button that copies, long lines scroll in their own box at phone and
// desktop widths, and an image in an answer is never fetched.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { base, launch, register } from "./browser.mjs";

let browser;
const problems = [];
before(async () => { browser = await launch(); });
after(async () => browser?.close());

const LONG_LINE = `const long = "${"x".repeat(400)}";`;
const ANSWER = [
  "Look: ![a cat](/static/never-fetched-cat.png) and [docs](https://example.com/docs).",
  "",
  "```js",
  "function hello() { return 1; }",
  LONG_LINE,
  "```",
  "",
  "| left | middle | right |",
  "|:--|:-:|--:|",
  "| 1 | 2 | 3 |",
  "",
  "And then " + "more words ".repeat(60),
].join("\n");

const fitsTheViewport = (page) =>
  page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth);

test("a Markdown answer is formatted while it streams, copies, fits the screen, fetches no image", async () => {
  const context = await browser.newContext({
    viewport: { width: 1280, height: 800 },
    permissions: ["clipboard-read", "clipboard-write"],
  });
  const page = await context.newPage();
  page.on("console", (m) => { if (m.type() === "error") problems.push(m.text()); });
  page.on("pageerror", (e) => problems.push(String(e)));
  const requested = [];
  page.on("request", (r) => requested.push(r.url()));

  // Sign-up lands on the chat home, ready to type.
  await register(page, `render-${Date.now()}@example.com`, "render pass 1");

  const box = page.getByLabel("Message");
  await box.fill(`echo: ${ANSWER}`);
  await box.press("Enter");
  const answer = page.locator("#messages article.msg.assistant").last();

  // Mid-answer: highlighted code and the table are on the page while it is still generating.
  const seen = await page.waitForFunction(() => {
    const all = document.querySelectorAll("#messages article.msg.assistant");
    const last = all[all.length - 1];
    if (!last) return false;
    if (!last.classList.contains("streaming")) return "ended";
    const formatted = last.querySelector(".code-block pre code span[class^='hl-']") && last.querySelector("table th.align-center");
    return formatted ? "streaming" : false;
  });
  assert.equal(await seen.jsonValue(), "streaming", "formatted before the answer ended");
  assert.equal(await answer.getAttribute("aria-busy"), "true");
  assert.equal((await answer.getByRole("status").textContent()).trim(), "Generating…");
  assert.ok(await fitsTheViewport(page), "a long code line does not widen the page mid-answer");

  await page.locator("#messages article.msg.assistant.complete").waitFor();
  assert.equal(await answer.getAttribute("aria-busy"), null);

  // Copy copies the code (and says so).
  const copyButton = answer.getByRole("button", { name: "Copy" });
  await copyButton.click();
  await answer.getByRole("button", { name: "Copied" }).waitFor();
  const copied = await page.evaluate(() => navigator.clipboard.readText());
  assert.equal(copied, `function hello() { return 1; }\n${LONG_LINE}\n`);

  // The code scrolls in its own box; the page does not get wider, on a desktop or a phone.
  const pre = answer.locator(".code-block pre");
  assert.ok(await pre.evaluate((el) => el.scrollWidth > el.clientWidth), "the code box scrolls");
  assert.ok(await fitsTheViewport(page), "1280 px: no horizontal page scroll");
  await page.setViewportSize({ width: 390, height: 800 });
  assert.ok(await fitsTheViewport(page), "390 px: no horizontal page scroll");

  // The image is a link to it, opened on purpose only; nothing fetched it.
  const imageLink = answer.getByRole("link", { name: "🖼 a cat" });
  assert.equal(await imageLink.getAttribute("href"), "/static/never-fetched-cat.png");
  assert.equal(await imageLink.getAttribute("target"), "_blank");
  assert.equal(await answer.locator("img").count(), 0);
  assert.deepEqual(requested.filter((url) => url.includes("never-fetched-cat")), [], "the image was not requested");

  await context.close();
  assert.deepEqual(problems, [], "no console errors or CSP violations");
});
