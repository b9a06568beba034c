// Attach in chat, on a phone in headless Chromium: a file uploaded from the chat box (with its
// progress bar) becomes a checked chip, a second chip is picked, both go with the message and the
// message names them; a refused file says why above the box; then, with project knowledge on,
// an answer names the project's file as its source. (COMPOSER_SHOTS=dir saves screenshots of
// the composer at 390 and 1280 px.)
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { base, launch, register } from "./browser.mjs";

let browser;
before(async () => { browser = await launch(); });
after(async () => browser?.close());

const fitsThePhone = (page) => page.evaluate(() => {
  const wide = Array.from(document.querySelectorAll("body *"))
    .filter((el) => el.getBoundingClientRect().right > window.innerWidth + 1 && !el.closest(".chips"))
    .map((el) => `${el.tagName}.${el.className}`).slice(0, 8);
  return document.documentElement.scrollWidth <= window.innerWidth ? "" : `scrolls sideways: ${wide}`;
});

test("upload from the chat box, attach two chips, send; knowledge cites the file", async () => {
  const problems = [];
  const context = await browser.newContext({ viewport: { width: 390, height: 844 } });
  const page = await context.newPage();
  // The refused upload below is logged by the browser itself; anything else is a problem.
  page.on("console", (m) => {
    if (m.type() === "error" && !/status of 422/.test(m.text())) problems.push(m.text());
  });
  page.on("pageerror", (e) => problems.push(String(e)));
  await register(page, `chat-files-${Date.now()}@example.com`, "chat files pass 1");
  await page.goto(`${base}/projects`);
  await page.getByLabel("Name").fill("Handbook");
  await page.getByRole("button", { name: "Create project" }).click();
  await page.getByRole("heading", { name: "Handbook", level: 1 }).waitFor();
  const project = new URL(page.url()).pathname;
  await page.locator("#file-upload input[type=file]").setInputFiles([
    { name: "holidays.md", mimeType: "text/markdown", buffer: Buffer.from("# Holidays\n\nHolidays are booked through the staff portal.\n") },
  ]);
  await page.getByRole("button", { name: "Upload" }).click();
  await page.locator("#files-section table.files").getByRole("link", { name: "holidays.md" }).waitFor();

  // A conversation (its composer arrives out of band with the first answer).
  await page.goto(`${base}/chat`);
  assert.equal(await page.getByRole("group", { name: "Attach files" }).isVisible(), true);
  await page.getByLabel("Message").fill("Hello");
  await page.getByRole("button", { name: "Send" }).click();
  await page.waitForURL(/\/conversations\//);
  await page.locator("#messages article.msg.assistant.complete").waitFor();

  // Every progress bar that appears is noted (a small file is up in a moment).
  await page.evaluate(() => {
    window.__bars = [];
    new MutationObserver((records) => records.forEach((r) => r.addedNodes.forEach((n) => {
      const bar = n.querySelector && n.querySelector("progress");
      if (bar) window.__bars.push(bar.getAttribute("aria-label"));
    }))).observe(document.body, { childList: true, subtree: true });
  });
  const [chooser] = await Promise.all([
    page.waitForEvent("filechooser"),
    page.getByRole("button", { name: "Add file" }).click(),
  ]);
  await chooser.setFiles({ name: "travel.txt", mimeType: "text/plain", buffer: Buffer.from("Trains are second class; planes economy.\n") });
  const travel = page.getByRole("checkbox", { name: "travel.txt" });
  await travel.waitFor();
  assert.equal(await travel.isChecked(), true, "the uploaded file's chip is checked");
  assert.deepEqual(await page.evaluate(() => window.__bars), ["Uploading travel.txt"]);
  await page.getByRole("checkbox", { name: "holidays.md" }).check();
  assert.equal(await fitsThePhone(page), "");
  if (process.env.COMPOSER_SHOTS) {
    await page.locator("#composer").screenshot({ path: `${process.env.COMPOSER_SHOTS}/composer-390.png` });
    await page.setViewportSize({ width: 1280, height: 860 });
    await page.locator("#composer").screenshot({ path: `${process.env.COMPOSER_SHOTS}/composer-1280.png` });
    await page.setViewportSize({ width: 390, height: 844 });
  }

  await page.getByLabel("Message").fill("Where do I book trips?");
  await page.getByRole("button", { name: "Send" }).click();
  const sent = page.locator("#messages article.msg.user", { hasText: "Where do I book trips?" });
  await sent.locator("li", { hasText: "📎 travel.txt" }).waitFor();
  await sent.locator("li", { hasText: "📎 holidays.md" }).waitFor();
  await page.locator("#messages article.msg.assistant.complete").nth(1).waitFor();
  assert.equal(await travel.isChecked(), false, "the chips reset after sending");
  assert.equal(await page.getByRole("checkbox", { name: "holidays.md" }).isChecked(), false);

  // A program is refused: the reason shows above the box, in plain words, and no chip comes.
  const [again] = await Promise.all([
    page.waitForEvent("filechooser"),
    page.getByRole("button", { name: "Add file" }).click(),
  ]);
  await again.setFiles({ name: "setup.exe", mimeType: "application/octet-stream", buffer: Buffer.from("MZ\x90\x00\x03\x00\x00\x00") });
  const error = page.locator("#composer-error [role=alert]");
  await error.waitFor();
  assert.match(await error.innerText(), /^“setup\.exe” was not uploaded: .+\.$/);
  assert.equal(await page.getByRole("checkbox", { name: "setup.exe" }).count(), 0);
  const conversation = page.url();

  // Project knowledge on: an answer names the file it came from.
  await page.goto(`${base}${project}`);
  await page.getByRole("button", { name: "Answer from these files" }).click();
  await page.getByText("Project knowledge is on").waitFor();
  await page.locator("#files-list .indexing").waitFor({ state: "detached" });
  await page.goto(conversation);
  await page.getByLabel("Message").fill("How are holidays booked?");
  await page.getByRole("button", { name: "Send" }).click();
  const answer = page.locator("#messages article.msg.assistant.complete").nth(2);
  await answer.waitFor();
  const sources = answer.locator("details.sources");
  assert.equal(await sources.locator("summary").innerText(), "Sources from the project's files");
  await sources.locator("li", { hasText: "holidays.md" }).first().waitFor();

  assert.deepEqual(problems, [], "no console errors or CSP violations");
  await context.close();
});
