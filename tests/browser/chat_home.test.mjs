// The chat home in headless Chromium: from sign-up to a streamed answer in two actions, Send
// that becomes Stop while an answer is written, renames that show everywhere, and a layout that
// fits a phone (the conversations in a drawer) and a desktop.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { base, launch } from "./browser.mjs";

let browser;
before(async () => { browser = await launch(); });
after(async () => browser?.close());

const PHONE = { width: 390, height: 844 };
const DESKTOP = { width: 1280, height: 860 };

async function newPage(viewport, colorScheme, problems) {
  const context = await browser.newContext({ viewport, colorScheme });
  const page = await context.newPage();
  // Chromium itself notes every 4xx answer; a refusal the page shows is not a problem.
  const refusal = /^Failed to load resource: the server responded with a status of 4\d\d/;
  page.on("console", (m) => { if (m.type() === "error" && !refusal.test(m.text())) problems.push(m.text()); });
  page.on("pageerror", (e) => problems.push(String(e)));
  return page;
}

/** Sign-up, counted as one action (the click on "Create account"). */
async function signUp(page, email) {
  await page.goto(`${base}/register`);
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill("home pass 1234");
  await page.getByRole("button", { name: "Create account" }).click();
  await page.waitForURL((url) => url.pathname === "/chat");
}

const lastAnswer = (page) => page.locator("#messages article.msg.assistant").last();

async function waitForPartialText(page) {
  await page.waitForFunction(() => {
    const all = document.querySelectorAll("#messages article.msg.assistant");
    const last = all[all.length - 1];
    return last && last.classList.contains("streaming") && last.textContent.trim().length > 10;
  });
}

async function horizontalOverflow(page) {
  return page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
}

test("sign-up to a streamed answer in two actions; Send becomes Stop while it is written", async () => {
  const problems = [];
  const page = await newPage(DESKTOP, "light", problems);
  await signUp(page, `home-${Date.now()}@example.com`); // action 1

  const box = page.getByLabel("Message");
  assert.ok(await box.evaluate((el) => el === document.activeElement), "the message box has the focus");
  await page.keyboard.type("Tell me about streams");
  await page.keyboard.press("Enter"); // action 2
  await waitForPartialText(page);
  assert.match(page.url(), /\/conversations\//);
  // The page became the conversation's, and its breadcrumb came with the answer (the chat home
  // has none): the project and the agent the first message made, without a reload.
  const trail = page.getByRole("navigation", { name: "breadcrumb" });
  await trail.getByRole("link", { name: "My chats" }).waitFor();
  assert.deepEqual(await trail.getByRole("link").allInnerTexts(), ["Projects", "My chats", "Assistant"]);

  // While it is written: Stop in place of Send, and Enter keeps the next text instead of sending.
  const composer = page.locator("#composer");
  await composer.getByRole("button", { name: "Stop" }).waitFor();
  assert.equal(await composer.getByRole("button", { name: "Send" }).isVisible(), false);
  await box.fill("my next question");
  await box.press("Enter");
  assert.equal(await box.inputValue(), "my next question", "the text is kept");
  assert.equal(await page.locator("#messages article.msg.user").count(), 1, "nothing was sent");
  // ... and the composer says why, and what to do.
  const note = composer.locator("[data-wait-note]");
  await note.getByText("The answer is still being written").waitFor();
  assert.match(await note.innerText(), /press Enter again when it ends, or Stop/);

  await composer.getByRole("button", { name: "Stop" }).click();
  await page.locator("#messages article.msg.assistant.stopped").waitFor();
  await composer.getByRole("button", { name: "Send" }).waitFor();
  assert.equal(await note.innerText(), "", "the note went with the answer's end");
  await page.waitForFunction(() => document.activeElement?.matches("#composer textarea"));
  assert.equal(await page.locator("#flash .flash").count(), 0, "the welcome went with the first answer");
  await box.press("Enter");
  await page.locator("#messages article.msg.user", { hasText: "my next question" }).waitFor();
  await page.locator("#messages article.msg.assistant.complete").waitFor();
  assert.equal(await page.locator("#composer-error .flash").count(), 0, "no refusal was ever shown");

  // A rename shows in the heading, the sidebar and the tab title at once.
  await page.getByText("Rename or delete").click();
  await page.getByLabel("Title").fill("Streams, renamed");
  await page.getByRole("button", { name: "Rename" }).click();
  await page.getByRole("heading", { name: "Streams, renamed", level: 1 }).waitFor();
  await page.locator("#conversation-results a[aria-current=page]", { hasText: "Streams, renamed" }).waitFor();
  await page.waitForFunction(() => document.title.startsWith("Streams, renamed"));

  // A refusal (422) shows next to the field and keeps the page quiet: no console error.
  await page.getByText("Rename or delete").click();
  await page.getByLabel("Title").evaluate((el) => { el.required = false; el.value = "   "; });
  await page.getByRole("button", { name: "Rename" }).click();
  await page.locator("#conversation-head .field-error").waitFor();

  // The sidebar's search finds it by title.
  await page.getByLabel("Search conversations").fill("RENAMED");
  await page.locator("#conversation-results li", { hasText: "Streams, renamed" }).waitFor();
  await page.getByLabel("Search conversations").fill("no such title");
  await page.getByText("No conversation title matches.").waitFor();

  assert.deepEqual(problems, [], "no console errors or CSP violations");
});

for (const colorScheme of ["light", "dark"]) {
  test(`long titles and lines stay inside a phone and a desktop (${colorScheme}); the list is a drawer on a phone`, async () => {
    const problems = [];
    const page = await newPage(PHONE, colorScheme, problems);
    await signUp(page, `narrow-${colorScheme}-${Date.now()}@example.com`);
    const long = "Averyveryverylongwordwithoutanyspaces".repeat(4) + " https://example.com/" + "path/".repeat(30);
    await page.getByLabel("Message").fill(long);
    await page.getByRole("button", { name: "Send" }).click();
    await page.locator("#messages article.msg.assistant.complete").waitFor();
    for (const viewport of [PHONE, DESKTOP]) {
      await page.setViewportSize(viewport);
      for (const path of ["/chat", new URL(page.url()).pathname, "/projects"]) {
        await page.goto(`${base}${path}`);
        assert.ok(await horizontalOverflow(page) <= 0, `${path} at ${viewport.width} px is not wider than the screen`);
      }
    }

    // On a phone: the conversations hide behind a button, and every control is big enough to tap.
    await page.setViewportSize(PHONE);
    await page.goto(`${base}/chat`);
    const sidebar = page.locator("#chat-sidebar");
    assert.equal(await sidebar.isVisible(), false, "the drawer starts closed");
    const toggle = page.getByRole("button", { name: "Conversations" });
    await toggle.click();
    await sidebar.getByRole("link", { name: /Averyvery/ }).waitFor({ state: "visible" });
    assert.equal(await toggle.getAttribute("aria-expanded"), "true");
    for (const target of [toggle, sidebar.getByRole("link", { name: /Averyvery/ }), sidebar.getByRole("button", { name: "New chat" }).or(sidebar.getByRole("link", { name: "New chat" }))]) {
      const box = await target.boundingBox();
      assert.ok(box.height >= 44, `tap target ${await target.innerText()} is ${box.height} px tall`);
    }
    // Open, the focus is inside and Tab keeps it there; Escape, Close or a tap beside it shuts it.
    assert.ok(await sidebar.evaluate((el) => el.contains(document.activeElement)), "focus moved into the drawer");
    for (let i = 0; i < 8; i++) await page.keyboard.press("Tab");
    assert.ok(await sidebar.evaluate((el) => el.contains(document.activeElement)), "Tab stays in the drawer");
    await page.keyboard.press("Escape");
    await sidebar.waitFor({ state: "hidden" });
    assert.ok(await toggle.evaluate((el) => el === document.activeElement), "focus back on the button");
    await toggle.click();
    await sidebar.getByRole("button", { name: "Close" }).click();
    await sidebar.waitFor({ state: "hidden" });
    await toggle.click();
    await sidebar.getByRole("link", { name: /Averyvery/ }).waitFor({ state: "visible" });
    await page.mouse.click(PHONE.width - 10, PHONE.height / 2);
    await sidebar.waitFor({ state: "hidden" });
    const send = await page.getByRole("button", { name: "Send" }).boundingBox();
    assert.ok(send.height >= 44 && send.x + send.width <= PHONE.width, "Send is on screen and big enough");
    assert.ok(send.height < 60, `"Send" stays on one line (${send.height} px tall)`);

    // The newest message of an older conversation is on screen when it opens.
    await toggle.click();
    await sidebar.getByRole("link", { name: /Averyvery/ }).click();
    await page.locator("#messages article.msg.assistant.complete").waitFor();
    assert.ok(await page.locator("#composer").isVisible());
    assert.ok(await lastAnswer(page).evaluate((el) => el.getBoundingClientRect().top < window.innerHeight), "scrolled to the latest");

    assert.deepEqual(problems, [], "no console errors or CSP violations");
  });
}

test("long names wrap and wide answer tables scroll, on a phone and a desktop", async () => {
  const problems = [];
  const page = await newPage(PHONE, "light", problems);
  await signUp(page, `names-${Date.now()}@example.com`);
  const word = "Unbrokenprojectnamewithoutanyspacesatall".repeat(3);
  await page.goto(`${base}/projects`);
  await page.getByLabel("Name").fill(word);
  await page.getByLabel("Description").fill(word);
  await page.getByRole("button", { name: "Create project" }).click();
  await page.getByRole("status").getByText("Project created").waitFor();
  const project = new URL(page.url()).pathname;
  await page.getByRole("link", { name: "Assistant" }).first().click();
  await page.locator("#agent-settings h1").waitFor();
  const agent = new URL(page.url()).pathname;
  for (const viewport of [PHONE, DESKTOP]) {
    await page.setViewportSize(viewport);
    for (const path of ["/projects", project, agent]) {
      await page.goto(`${base}${path}`);
      assert.ok(await horizontalOverflow(page) <= 0, `${path} at ${viewport.width} px is not wider than the screen`);
    }
  }

  // A table of long values keeps each value on one line and scrolls in its own box.
  await page.setViewportSize(PHONE);
  await page.goto(`${base}/chat`);
  const cells = Array.from({ length: 6 }, (_, i) => `value_without_spaces_${i}`);
  const table = `| ${cells.map((_, i) => `c${i}`).join(" | ")} |\n|${cells.map(() => "---").join("|")}|\n| ${cells.join(" | ")} |`;
  await page.getByLabel("Message").fill(`echo: ${table}`);
  await page.getByRole("button", { name: "Send" }).click();
  const answer = page.locator("#messages article.msg.assistant.complete");
  await answer.waitFor();
  const cell = answer.locator("td").first();
  const lineHeight = await cell.evaluate((el) => parseFloat(getComputedStyle(el).lineHeight) || 24);
  assert.ok((await cell.boundingBox()).height < lineHeight * 2.5, "a cell's value stays on one line");
  assert.ok(await horizontalOverflow(page) <= 0, "the page is not wider than the screen");
  assert.deepEqual(problems, [], "no console errors or CSP violations");
});
