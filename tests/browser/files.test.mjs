// Files on a project's page in headless Chromium: each file uploads with its own progress bar,
// the list shows them, a download gives the same bytes, delete asks and removes.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { base, launch, register } from "./browser.mjs";

let browser;
before(async () => { browser = await launch(); });
after(async () => browser?.close());

test("upload two files with progress bars, download one, delete one, attach one in chat", async () => {
  const problems = [];
  const context = await browser.newContext({ viewport: { width: 390, height: 844 }, acceptDownloads: true });
  const page = await context.newPage();
  page.on("console", (m) => { if (m.type() === "error") problems.push(m.text()); });
  page.on("pageerror", (e) => problems.push(String(e)));
  await register(page, `files-${Date.now()}@example.com`, "files pass 1");
  await page.goto(`${base}/projects`);
  await page.getByLabel("Name").fill("Papers");
  await page.getByRole("button", { name: "Create project" }).click();
  await page.getByRole("heading", { name: "Papers", level: 1 }).waitFor();

  const big = Buffer.alloc(3 * 1024 * 1024, "confab ");
  await page.locator("#file-upload input[type=file]").setInputFiles([
    { name: "notes.md", mimeType: "text/markdown", buffer: Buffer.from("# Notes\n\nThe answer is 42.\n") },
    { name: "big.txt", mimeType: "text/plain", buffer: big },
  ]);
  await page.getByRole("button", { name: "Upload" }).click();
  // One progress bar per file while they go up; then the list has both.
  await page.getByRole("progressbar", { name: "Uploading big.txt" }).waitFor({ state: "attached" });
  await page.locator("#files-section table.files").getByRole("link", { name: "big.txt" }).waitFor();
  await page.locator("#files-section table.files").getByRole("link", { name: "notes.md" }).waitFor();
  assert.match(await page.locator("#files-section").innerText(), /3\.0 MB/);
  const wide = await page.evaluate(() => Array.from(document.querySelectorAll("body *"))
    .filter((el) => el.getBoundingClientRect().right > window.innerWidth + 1)
    .map((el) => `${el.tagName}.${el.className} ${Math.round(el.getBoundingClientRect().right)}`).slice(0, 8));
  assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth), `fits a phone: ${wide}`);
  // The table scrolls sideways inside its box; Delete must be in view without that.
  const del = await page.getByRole("button", { name: "Delete big.txt" }).boundingBox();
  assert.ok(del.x + del.width <= 390, `Delete is in view on a phone (its right edge at ${Math.round(del.x + del.width)} px)`);

  const [download] = await Promise.all([
    page.waitForEvent("download"),
    page.getByRole("link", { name: "notes.md" }).click(),
  ]);
  const path = await download.path();
  const { readFile } = await import("node:fs/promises");
  assert.equal(await readFile(path, "utf8"), "# Notes\n\nThe answer is 42.\n");

  page.once("dialog", (dialog) => dialog.accept());
  await page.getByRole("button", { name: "Delete big.txt" }).click();
  await page.getByRole("link", { name: "big.txt" }).waitFor({ state: "detached" });
  assert.equal(await page.locator("#files-section tbody tr").count(), 1);

  // In the chat, the project's file can go with a message; the message shows it.
  await page.goto(`${base}/chat`);
  await page.getByRole("checkbox", { name: "notes.md" }).check();
  await page.getByLabel("Message").fill("What is the answer in my notes?");
  await page.getByRole("button", { name: "Send" }).click();
  await page.locator("#messages article.msg.user", { hasText: "📎 notes.md" }).waitFor();
  await page.locator("#messages article.msg.assistant.complete").waitFor();
  assert.equal(await page.getByRole("checkbox", { name: "notes.md" }).isChecked(), false, "the next message starts without a file");

  assert.deepEqual(problems, [], "no console errors or CSP violations");
  await context.close();
});

test("a refused upload shows its reason, with no progress bar beside it", async () => {
  const context = await browser.newContext({ viewport: { width: 390, height: 844 } });
  const page = await context.newPage();
  await register(page, `refused-${Date.now()}@example.com`, "files pass 1");
  await page.goto(`${base}/projects`);
  await page.getByLabel("Name").fill("Refusals");
  await page.getByRole("button", { name: "Create project" }).click();
  await page.getByRole("heading", { name: "Refusals", level: 1 }).waitFor();
  await page.locator("#file-upload input[type=file]").setInputFiles([
    { name: "empty.txt", mimeType: "text/plain", buffer: Buffer.alloc(0) },
  ]);
  await page.getByRole("button", { name: "Upload" }).click();
  const refused = page.locator("#file-upload .upload-progress li.error");
  await refused.waitFor();
  assert.match(await refused.innerText(), /^empty\.txt — \S/);
  assert.equal(await refused.locator("progress").count(), 0, "a full bar beside a refusal reads as a success");
  await context.close();
});
