// The journey a person makes, in real headless Chromium: sign up, sign in, build a project with an
// agent and prompts, reorder and version them, check the composed system message, sign out.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { base, launch, openPage as open } from "./browser.mjs";

let browser;
let problems = [];

before(async () => { browser = await launch(); });
after(async () => browser?.close());

const openPage = () => open(browser, problems);

/** Marks the document; if the marker survives an action, the page was not reloaded. */
const mark = (page) => page.evaluate(() => { window.__sameDocument = true; });
const stillSameDocument = async (page, what) =>
  assert.equal(await page.evaluate(() => window.__sameDocument === true), true, `${what} reloaded the page`);

const systemMessage = (page) => page.locator("#system-message").innerText();

test("register, sign in, project, agent, prompts, reorder, version, rollback, sign out", async () => {
  const page = await openPage();
  const email = `journey-${Date.now()}@example.com`;
  const password = process.env.JOURNEY_PASSWORD ?? "journey pass 1";

  await page.goto(`${base}/register`);
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Create account" }).click();
  await page.waitForURL(`${base}/chat?welcome=1`);
  await page.getByRole("status").getByText(`Welcome to confab, ${email}!`).waitFor();

  await page.getByRole("button", { name: "Sign out" }).click();
  await page.waitForURL(/\/login/);
  await page.getByRole("status").getByText("You have signed out.").waitFor();
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL(`${base}/chat`);
  await assert.doesNotReject(page.getByText(email).waitFor());
  await page.getByRole("link", { name: "Projects" }).click();
  await page.waitForURL(`${base}/projects`);

  // Create a project: it opens, and says it was created.
  await page.getByLabel("Name").fill("Journey project");
  await page.getByRole("button", { name: "Create project" }).click();
  await page.getByRole("heading", { name: "Journey project", level: 1 }).waitFor();
  await page.getByRole("status").getByText("Project created").waitFor();

  // Add an agent.
  await mark(page);
  await page.locator("#agents-section summary").click();
  await page.locator("#agents-section").getByLabel("Name").fill("Librarian");
  await page.getByRole("button", { name: "Add agent" }).click();
  await page.getByRole("link", { name: "Librarian" }).waitFor();
  await stillSameDocument(page, "adding an agent");
  await page.getByRole("link", { name: "Librarian" }).click();
  await page.getByRole("heading", { name: "Librarian", level: 1 }).waitFor();

  // Two prompts; the composed system message follows.
  await mark(page);
  for (const [title, content] of [["First", "Alpha text."], ["Second", "Beta text."]]) {
    await page.locator("#prompts-section summary").click();
    await page.locator("#prompts-section").getByLabel("Title").fill(title);
    await page.locator("#prompts-section").getByLabel("Content").fill(content);
    await page.getByRole("button", { name: "Add prompt" }).click();
    await page.getByRole("link", { name: title, exact: true }).waitFor();
  }
  assert.equal(await systemMessage(page), "Alpha text.\n\nBeta text.");

  // Reorder: Second moves up.
  await page.getByRole("button", { name: "Move “Second” up" }).click();
  await page.waitForFunction(() => document.querySelector("#prompt-list li .prompt-title")?.textContent === "Second");
  assert.equal(await systemMessage(page), "Beta text.\n\nAlpha text.");
  await stillSameDocument(page, "adding and reordering prompts");

  // Edit First: a new version.
  await page.locator("#prompt-list li", { hasText: "First" }).getByRole("button", { name: "Edit · history" }).click();
  await page.getByRole("heading", { name: /First/, level: 1 }).waitFor();
  await mark(page);
  await page.getByLabel("Content").fill("Alpha revised.");
  await page.getByRole("button", { name: "Save as new version" }).click();
  await page.getByText("Saved as version 2.").waitFor();
  assert.equal(await page.locator("#version-list li").count(), 2);

  // Roll back to version 1.
  await page.getByRole("button", { name: "Make v1 current" }).click();
  await page.getByText("Version 1 is current again.").waitFor();
  assert.equal(await page.getByLabel("Content").inputValue(), "Alpha text.");
  await stillSameDocument(page, "editing and rolling back");

  // The agent page shows exactly what will be sent.
  await page.getByRole("button", { name: "Back" }).click();
  await page.getByRole("heading", { name: "Librarian", level: 1 }).waitFor();
  assert.equal(await systemMessage(page), "Beta text.\n\nAlpha text.");

  // Sign out; protected pages send you to the login page.
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.waitForURL(/\/login/);
  await page.goto(`${base}/projects`);
  assert.match(page.url(), /\/login\?next=%2Fprojects$/);

  assert.deepEqual(problems, [], "no console errors or CSP violations");
});

test("pages are usable on a phone-sized screen and follow dark mode", async () => {
  const context = await browser.newContext({ viewport: { width: 390, height: 844 }, colorScheme: "dark" });
  const page = await context.newPage();
  await page.goto(`${base}/login`);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth);
  assert.equal(overflow, false, "no horizontal scrolling at 390 px");
  const background = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  const [r, g, b] = background.match(/\d+/g).map(Number);
  assert.ok(r + g + b < 200, `dark background in dark mode, got ${background}`);
  await context.close();
});
