// Screenshots of confab's main pages for docs/screenshots/, at a phone and a desktop size, in light
// and dark mode. Not a test: it signs up a fresh user against a running confab (started as
// tests/browser/run.sh does, with the fake LLM) and overwrites the PNGs.
// Usage: CONFAB_URL=http://127.0.0.1:PORT node tests/browser/screenshots.mjs
import { mkdir } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { base, launch } from "./browser.mjs";

const outDir = fileURLToPath(new URL("../../docs/screenshots/", import.meta.url));
const VIEWPORTS = { phone: { width: 390, height: 844 }, desktop: { width: 1280, height: 860 } };
const SCHEMES = ["light", "dark"];

// The fake LLM answers "echo: …" with the rest of the message, so the answer shows Markdown.
const FIRST_ANSWER = `## Reading a file in Rust

Three ways, from simplest to most flexible:

- \`std::fs::read_to_string\` for small text files
- \`BufReader::lines\` to go line by line
- \`File::open\` with \`read\` for raw bytes

\`\`\`rust
use std::fs;

fn main() -> std::io::Result<()> {
    let text = fs::read_to_string("notes.txt")?;
    println!("{} lines", text.lines().count());
    Ok(())
}
\`\`\`

| Method | Memory | Best for |
|---|---|---|
| \`read_to_string\` | whole file | config, small files |
| \`BufReader::lines\` | one line | logs, large files |`;

const SECOND_ANSWER = "Sure: *Ferris* is the unofficial mascot of Rust, a friendly orange crab.";

const problems = [];

function watch(page) {
  page.on("console", (m) => { if (m.type() === "error") problems.push(`${page.url()}: ${m.text()}`); });
  page.on("pageerror", (e) => problems.push(`${page.url()}: ${e}`));
}

async function send(page, text) {
  const box = page.getByLabel("Message");
  await box.fill(text);
  await box.press("Enter");
}

/** Waits until the last answer on the page has finished. */
async function waitForAnswer(page) {
  await page.waitForFunction(() => {
    const all = document.querySelectorAll("#messages article.msg.assistant");
    const last = all[all.length - 1];
    return last && !last.classList.contains("streaming") && last.classList.contains("complete");
  }, null, { timeout: 60_000 });
}

/** Takes `name` at every size and colour scheme, with the signed-in user's cookies; only the
 * viewport unless `fullPage` (the conversation, to show the whole exchange). */
async function shootAll(browser, storageState, name, path, { fullPage = false } = {}) {
  for (const [size, viewport] of Object.entries(VIEWPORTS)) {
    for (const colorScheme of SCHEMES) {
      const context = await browser.newContext({ viewport, colorScheme, storageState, deviceScaleFactor: 1 });
      const page = await context.newPage();
      watch(page);
      await page.goto(`${base}${path}`);
      await page.waitForLoadState("networkidle");
      await page.evaluate(() => document.fonts.ready);
      if (fullPage) {
        // A viewport as tall as the page, rather than Playwright's fullPage: that one keeps the
        // sticky sidebar and composer where the scrolled viewport had them, mid-picture.
        const height = await page.evaluate(() => document.documentElement.scrollHeight);
        await page.setViewportSize({ width: viewport.width, height });
        await page.evaluate(() => window.scrollTo(0, 0));
      }
      const file = `${outDir}${name}-${size}-${colorScheme}.png`;
      await page.screenshot({ path: file, animations: "disabled", caret: "hide" });
      console.log(`wrote ${file.slice(outDir.length)}`);
      await context.close();
    }
  }
}

async function main() {
  await mkdir(outDir, { recursive: true });
  const browser = await launch();
  try {
    const context = await browser.newContext({ viewport: VIEWPORTS.desktop });
    const page = await context.newPage();
    watch(page);

    // Sign up: the chat home with its welcome, before anything else exists.
    const email = `ada-${Date.now()}@example.com`;
    await page.goto(`${base}/register`);
    await page.getByLabel("Email").fill(email);
    await page.getByLabel("Password").fill("screenshot pass 1234");
    await page.getByRole("button", { name: "Create account" }).click();
    await page.waitForURL((url) => url.pathname === "/chat");
    const welcomePath = new URL(page.url()).pathname + new URL(page.url()).search;
    await shootAll(browser, await context.storageState(), "welcome", welcomePath);

    // The first message from the chat home starts a project with an assistant.
    await send(page, `echo: ${FIRST_ANSWER}`);
    await page.waitForURL(/\/conversations\//);
    await waitForAnswer(page);
    const firstConversation = new URL(page.url()).pathname;
    await page.getByText("Rename or delete").click();
    await page.getByLabel("Title").fill("Reading files in Rust");
    await page.getByRole("button", { name: "Rename" }).click();
    await page.getByRole("heading", { name: "Reading files in Rust", level: 1 }).waitFor();

    // A second conversation, so the sidebar lists more than one.
    await page.locator("#chat-sidebar a.new-chat").click();
    await page.waitForURL((url) => url.pathname === "/chat");
    await send(page, `echo: ${SECOND_ANSWER}`);
    await page.waitForURL(/\/conversations\//);
    await waitForAnswer(page);

    // The project and its agent, with a prompt so the system message shows something.
    await page.goto(`${base}/projects`);
    await page.locator("main a[href^='/projects/']").first().click();
    await page.waitForURL(/\/projects\/[^/]+$/);
    const projectPath = new URL(page.url()).pathname;
    await page.locator("#file-upload input[type=file]").setInputFiles({
      name: "rust-notes.md",
      mimeType: "text/markdown",
      buffer: Buffer.from("# Reading files\n\nUse std::fs::read_to_string for small text files.\n"),
    });
    await page.getByRole("button", { name: "Upload" }).click();
    await page.locator("#files-section table.files").getByRole("link", { name: "rust-notes.md" }).waitFor();
    await page.getByRole("button", { name: "Answer from these files" }).click();
    await page.getByText("Project knowledge is on").waitFor();
    await page.locator("main a[href^='/agents/']").first().click();
    await page.waitForURL(/\/agents\/[^/]+$/);
    const agentPath = new URL(page.url()).pathname;
    await page.locator("#prompts-section summary").click();
    await page.locator("#prompts-section").getByLabel("Title").fill("Style");
    await page.locator("#prompts-section").getByLabel("Content").fill("Answer briefly. Show code in Rust when it helps, and say which crate a function comes from.");
    await page.getByRole("button", { name: "Add prompt" }).click();
    await page.getByRole("link", { name: "Style", exact: true }).waitFor();

    const state = await context.storageState();
    await shootAll(browser, state, "chat", firstConversation, { fullPage: true });
    await shootAll(browser, state, "projects", "/projects");
    await shootAll(browser, state, "project", projectPath);
    await shootAll(browser, state, "files", `${projectPath}#files-heading`);
    await shootAll(browser, state, "agent", agentPath);
    await shootAll(browser, state, "account", "/account");
    await context.close();
  } finally {
    await browser.close();
  }
  if (problems.length) {
    console.error(`console errors:\n${problems.join("\n")}`);
    process.exitCode = 1;
  }
}

await main();
