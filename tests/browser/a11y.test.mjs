// Accessibility of every page, on a phone (390×844) and a laptop (1280×860), in light and dark:
// axe-core finds no serious or critical violation (WCAG AA colour contrast included), and the
// things axe cannot judge are checked here: a visible outline on every focused control, the skip
// link, 44 px tap targets and a one-line header on phones, icons that contrast with their button.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { base, launch, register } from "./browser.mjs";

// axe-core comes from npm (tests/browser/package.json); addScriptTag inlines it, which the
// site's CSP forbids, so the audit contexts bypass CSP (the other journeys check CSP).
const axePath = createRequire(import.meta.url).resolve("axe-core/axe.min.js");

const viewports = { phone: { width: 390, height: 844 }, laptop: { width: 1280, height: 860 } };
const schemes = ["light", "dark"];
const password = "a11y pass 1";

let browser;
/** What the pages need: the signed-in states and the URLs made in `before`. */
const site = {};

before(async () => {
  browser = await launch();

  // Someone with no project yet (the empty dashboard).
  let context = await browser.newContext();
  let page = await context.newPage();
  await register(page, `a11y-empty-${Date.now()}@example.com`, password);
  site.empty = await context.storageState();
  await context.close();

  // Someone with a project, an agent prompt with three versions and a finished answer.
  context = await browser.newContext();
  page = await context.newPage();
  site.email = `a11y-full-${Date.now()}@example.com`;
  await register(page, site.email, password);
  await page.goto(`${base}/projects`);
  await page.getByLabel("Name").fill("Accessible project");
  await page.getByLabel("Description").fill("Checked by axe-core.");
  await page.getByRole("button", { name: "Create project" }).click();
  await page.getByRole("heading", { name: "Accessible project", level: 1 }).waitFor();
  site.project = new URL(page.url()).pathname;
  await addPrompt(page, "Project rule", "Be brief.");
  // Files, so the chat's composer shows its chips (one name too long for a phone).
  await page.locator("#file-upload input[type=file]").setInputFiles([
    { name: "notes.md", mimeType: "text/markdown", buffer: Buffer.from("# Notes\n") },
    { name: "quarterly-report-2024-final-version-with-all-the-appendices.txt", mimeType: "text/plain", buffer: Buffer.from("Q4") },
  ]);
  await page.getByRole("button", { name: "Upload" }).click();
  await page.locator("#files-section table.files").getByRole("link", { name: "notes.md" }).waitFor();
  await page.locator("#files-section table.files").getByRole("link", { name: /^quarterly-report/ }).waitFor();

  await page.locator("#agent-list h3 a").first().click();
  await page.locator("#agent-settings h1").waitFor();
  site.agent = new URL(page.url()).pathname;
  await addPrompt(page, "Tone", "Be kind.");
  await page.getByRole("link", { name: "Tone", exact: true }).click();
  for (const content of ["Be kind, v2.", "Be kind, v3."]) {
    await page.getByLabel("Content").fill(content);
    await page.getByRole("button", { name: "Save as new version" }).click();
    await page.locator("#version-list li").nth(content.endsWith("v2.") ? 1 : 2).waitFor();
  }
  site.prompt = new URL(page.url()).pathname;

  await page.goto(`${base}${site.agent}`);
  await page.getByRole("button", { name: /^Chat with/ }).click();
  const box = page.getByLabel("Message");
  await box.fill("Hello there");
  await box.press("Enter");
  await page.locator("#messages article.msg.assistant.complete").waitFor();
  await page.waitForURL(/\/conversations\//);
  site.conversation = new URL(page.url()).pathname;
  site.full = await context.storageState();
  await context.close();
});
after(async () => browser?.close());

async function addPrompt(page, title, content) {
  await page.locator("#prompts-section summary").click();
  await page.locator("#prompts-section").getByLabel("Title").fill(title);
  await page.locator("#prompts-section").getByLabel("Content").fill(content);
  await page.getByRole("button", { name: "Add prompt" }).click();
  await page.getByRole("link", { name: title, exact: true }).waitFor();
}

/** Submits a form with what the browser's own checks would refuse, to see the server's messages. */
async function submitUnchecked(page, button) {
  await page.evaluate(() => document.querySelectorAll("form").forEach((f) => { f.noValidate = true; }));
  await button.click();
}

/** Every page of the site: who sees it, where, and what to do there before looking. */
const pages = () => [
  { name: "register", user: null, path: "/register" },
  {
    name: "register, refused", user: null, path: "/register",
    act: async (page) => {
      await page.getByLabel("Email").fill("not an email");
      await page.getByLabel("Password").fill("short");
      await submitUnchecked(page, page.getByRole("button", { name: "Create account" }));
      await page.locator(".field-error").first().waitFor();
    },
  },
  { name: "login", user: null, path: "/login" },
  { name: "login after signing out", user: null, path: "/login?signed_out=1" },
  { name: "projects, empty", user: "empty", path: "/projects" },
  { name: "chat home, welcome", user: "empty", path: "/chat?welcome=1" },
  { name: "chat home", user: "full", path: "/chat" },
  { name: "project, just created", user: "full", path: `${site.project}?created=1` },
  { name: "projects", user: "full", path: "/projects" },
  { name: "project", user: "full", path: site.project },
  {
    name: "project, agent refused", user: "full", path: site.project,
    act: async (page) => {
      await page.locator("#agents-section summary").click();
      await page.locator("#agents-section").getByLabel("Temperature").fill("5");
      await submitUnchecked(page, page.getByRole("button", { name: "Add agent" }));
      await page.locator("#agents-section .field-error").first().waitFor();
    },
  },
  { name: "agent", user: "full", path: site.agent },
  { name: "prompt", user: "full", path: site.prompt },
  { name: "chat", user: "full", path: site.conversation },
  { name: "account", user: "full", path: "/account" },
  { name: "confirm delete", user: "full", path: `${site.project}/delete` },
  { name: "not found", user: "full", path: "/projects/00000000-0000-0000-0000-000000000000" },
];

async function contextFor(user, viewport, colorScheme) {
  return browser.newContext({
    viewport, colorScheme, bypassCSP: true,
    storageState: user ? site[user] : undefined,
  });
}

/** Opens every <details>, so the forms they hold are checked too. */
const openAllDetails = (page) =>
  page.evaluate(() => document.querySelectorAll("details").forEach((d) => { d.open = true; }));

async function axeProblems(page) {
  await page.addScriptTag({ path: axePath });
  const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ["violations"] }));
  return result.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .flatMap((v) => v.nodes.map((n) =>
      `${v.id} (${v.impact}): ${v.help}\n      at ${n.target.join(" ")}\n      ${n.failureSummary.replaceAll("\n", "\n      ")}`));
}

// Colour helpers, run in the page: the effective background behind an element and WCAG contrast.
const colourHelpers = () => {
  const parse = (c) => {
    const m = c.match(/rgba?\(([^)]+)\)/);
    if (!m) return null;
    const [r, g, b, a = 1] = m[1].split(/[ ,/]+/).filter(Boolean).map(Number);
    return { r, g, b, a };
  };
  const over = (top, bottom) => ({
    r: top.r * top.a + bottom.r * (1 - top.a),
    g: top.g * top.a + bottom.g * (1 - top.a),
    b: top.b * top.a + bottom.b * (1 - top.a),
    a: 1,
  });
  const background = (el) => {
    const layers = [];
    for (let e = el; e; e = e.parentElement) {
      const c = parse(getComputedStyle(e).backgroundColor);
      if (c && c.a > 0) { layers.push(c); if (c.a === 1) break; }
    }
    return layers.reduceRight((acc, c) => over(c, acc), { r: 255, g: 255, b: 255, a: 1 });
  };
  const luminance = ({ r, g, b }) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const contrast = (x, y) => {
    const [a, b] = [luminance(x), luminance(y)].sort((p, q) => q - p);
    return (a + 0.05) / (b + 0.05);
  };
  window.__colours = { parse, over, background, contrast };
};

/** Tabs through the page: each focused element must show an outline that contrasts (3:1) with what is around it. */
async function focusProblems(page) {
  await page.evaluate(colourHelpers);
  await page.evaluate(() => { document.activeElement?.blur(); window.scrollTo(0, 0); });
  const problems = [];
  let focused = 0;
  for (let i = 0; i < 150; i++) {
    await page.keyboard.press("Tab");
    const found = await page.evaluate(() => {
      const el = document.activeElement;
      if (!el || el === document.body || el.dataset.a11yFocused) return null;
      el.dataset.a11yFocused = "yes";
      const { parse, over, background, contrast } = window.__colours;
      const style = getComputedStyle(el);
      const id = el.outerHTML.replace(/ data-a11y-focused="yes"/, "").slice(0, 120);
      const width = parseFloat(style.outlineWidth);
      if (style.outlineStyle === "none" || width < 2) return { id, problem: `outline ${style.outlineStyle} ${style.outlineWidth}` };
      const around = background(el.parentElement ?? el);
      const ratio = contrast(over(parse(style.outlineColor), around), around);
      if (ratio < 3) return { id, problem: `outline contrast ${ratio.toFixed(2)}:1` };
      return { id };
    });
    if (!found) break;
    focused += 1;
    if (found.problem) problems.push(`focus: ${found.id} — ${found.problem}`);
  }
  if (focused === 0) problems.push("focus: Tab focused nothing");
  return problems;
}

/** On a phone: every button, link-button, summary and navigation link is at least 44 px tall. */
async function tapTargetProblems(page) {
  return page.evaluate(() => [...document.querySelectorAll("button, [role=button], summary, nav a, a.skip-link")]
    .filter((el) => el.getClientRects().length > 0)
    .filter((el) => !el.matches("a.skip-link:not(:focus)"))
    .map((el) => [el, el.getBoundingClientRect().height])
    .filter(([, height]) => height < 44 - 0.5)
    .map(([el, height]) => `tap target ${height.toFixed(1)} px tall: ${el.outerHTML.replace(/ data-a11y-focused="yes"/, "").slice(0, 100)}`));
}

/** On a phone the header's items sit on one line. */
async function headerProblems(page) {
  return page.evaluate(() => {
    // One rectangle per line of each text: their middles, in every item, must agree.
    const walker = document.createTreeWalker(document.querySelector("body > header"), NodeFilter.SHOW_TEXT);
    const middles = [];
    while (walker.nextNode()) {
      const range = document.createRange();
      range.selectNodeContents(walker.currentNode);
      for (const r of range.getClientRects()) if (r.width > 0) middles.push(r.top + r.height / 2);
    }
    const spread = Math.max(...middles) - Math.min(...middles);
    const overflow = document.documentElement.scrollWidth > window.innerWidth;
    return [
      ...(spread > 4 ? [`header wraps: its lines of text are ${spread.toFixed(0)} px apart`] : []),
      ...(overflow ? ["the page scrolls sideways"] : []),
    ];
  });
}

/**
 * The chevron of each summary button against the button behind it, pixel by pixel: a screenshot
 * with the icon and one without; where they differ, the icon's pixels must reach 3:1.
 */
async function iconProblems(page) {
  const problems = [];
  const summaries = page.locator("summary[role=button]");
  for (let i = 0; i < await summaries.count(); i++) {
    const summary = summaries.nth(i);
    if (!await summary.isVisible()) continue;
    const withIcon = await summary.screenshot({ animations: "disabled" });
    const hide = await page.addStyleTag({ content: "summary::after { visibility: hidden !important; }" });
    const withoutIcon = await summary.screenshot({ animations: "disabled" });
    await hide.evaluate((el) => el.remove());
    const ratio = await maxContrastOfDifference(page, withIcon, withoutIcon);
    if (ratio < 3) problems.push(`icon of “${(await summary.innerText()).trim()}”: contrast ${ratio.toFixed(2)}:1`);
  }
  return problems;
}

async function maxContrastOfDifference(page, shotA, shotB) {
  const blank = await page.context().newPage();
  try {
    return await blank.evaluate(async ([a, b]) => {
      const pixels = async (b64) => {
        const img = new Image();
        img.src = `data:image/png;base64,${b64}`;
        await img.decode();
        const canvas = document.createElement("canvas");
        canvas.width = img.width; canvas.height = img.height;
        const ctx = canvas.getContext("2d");
        ctx.drawImage(img, 0, 0);
        return ctx.getImageData(0, 0, img.width, img.height).data;
      };
      const [p, q] = [await pixels(a), await pixels(b)];
      const lum = (r, g, b) => {
        const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
        return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
      };
      let best = 1;
      for (let i = 0; i < p.length; i += 4) {
        if (p[i] === q[i] && p[i + 1] === q[i + 1] && p[i + 2] === q[i + 2]) continue;
        const [x, y] = [lum(p[i], p[i + 1], p[i + 2]), lum(q[i], q[i + 1], q[i + 2])].sort((m, n) => n - m);
        best = Math.max(best, (x + 0.05) / (y + 0.05));
      }
      return best;
    }, [shotA.toString("base64"), shotB.toString("base64")]);
  } finally {
    await blank.close();
  }
}

for (const [size, viewport] of Object.entries(viewports)) {
  for (const scheme of schemes) {
    test(`every page passes axe-core and keyboard checks: ${size}, ${scheme}`, async () => {
      const problems = [];
      const contexts = {};
      try {
        for (const p of pages()) {
          const key = p.user ?? "anonymous";
          contexts[key] ??= await contextFor(p.user, viewport, scheme);
          const page = await contexts[key].newPage();
          await page.goto(`${base}${p.path}`);
          if (p.act) await p.act(page);
          const found = [
            ...await iconProblems(page),
            ...(size === "phone" ? await headerProblems(page) : []),
          ];
          await openAllDetails(page);
          found.push(...await axeProblems(page), ...await focusProblems(page));
          if (size === "phone") found.push(...await tapTargetProblems(page));
          problems.push(...found.map((f) => `[${p.name}] ${f}`));
          await page.close();
        }
      } finally {
        for (const c of Object.values(contexts)) await c.close();
      }
      assert.deepEqual(problems, [], `${problems.length} accessibility problems (${size}, ${scheme}):\n  ${problems.join("\n  ")}`);
    });
  }
}

test("Tab first reaches the skip link, which shows itself and moves focus to the content", async () => {
  for (const scheme of schemes) {
    const context = await contextFor("full", viewports.phone, scheme);
    const page = await context.newPage();
    await page.goto(`${base}${site.project}`);
    await page.keyboard.press("Tab");
    const link = page.getByRole("link", { name: "Skip to content" });
    assert.equal(await link.evaluate((el) => el === document.activeElement), true, "the skip link has focus");
    const box = await link.boundingBox();
    assert.ok(box.y >= 0 && box.height >= 24 && box.width >= 60, `the focused skip link is in view: ${JSON.stringify(box)}`);
    await page.keyboard.press("Enter");
    await page.waitForFunction(() => document.activeElement?.id === "content");
    assert.equal(await page.evaluate(() => document.activeElement.tagName), "MAIN");
    await context.close();
  }
});

test("fields sit side by side on a laptop and one under the other on a phone", async () => {
  for (const [size, viewport] of Object.entries(viewports)) {
    const context = await contextFor("full", viewport, "light");
    const page = await context.newPage();
    await page.goto(`${base}${site.agent}`);
    await page.locator("#agent-settings summary").click();
    const provider = await page.locator("#agent-settings").getByLabel("Provider", { exact: true }).boundingBox();
    const model = await page.locator("#agent-settings").getByLabel("Model", { exact: true }).boundingBox();
    if (size === "laptop") {
      assert.equal(provider.y, model.y, "Provider and Model on one row");
      assert.ok(model.x > provider.x + provider.width, "Model right of Provider");
    } else {
      assert.ok(model.y > provider.y + provider.height, "Model under Provider");
      assert.equal(model.width, provider.width);
    }
    await context.close();
  }
});

test("every field error has one red; the default badge is normal text size", async () => {
  for (const scheme of schemes) {
    const context = await contextFor("full", viewports.laptop, scheme);
    const page = await context.newPage();
    await page.goto(`${base}${site.project}`);
    // The name's message follows its label; the temperature's follows the invalid input itself.
    await page.locator("#agents-section summary").click();
    await page.locator("#agents-section").getByLabel("Name").fill("");
    await page.locator("#agents-section").getByLabel("Temperature").fill("5");
    await submitUnchecked(page, page.getByRole("button", { name: "Add agent" }));
    await page.locator("#agent-temperature-error").waitFor();
    const colours = await page.locator(".field-error").evaluateAll((els) => els.map((el) => getComputedStyle(el).color));
    assert.ok(colours.length >= 2, `messages for name and temperature: ${colours}`);
    assert.equal(new Set(colours).size, 1, `${scheme}: field errors in one colour, got ${colours}`);

    const badge = await page.locator("#agent-list mark", { hasText: "default" }).evaluate((el) =>
      [getComputedStyle(el).fontSize, getComputedStyle(document.body).fontSize]);
    assert.equal(badge[0], badge[1], "the badge's font size is the body's");
    await context.close();
  }
});

test("a prompt's history has no list numbers; an agent prompt's breadcrumb names the project", async () => {
  const context = await contextFor("full", viewports.laptop, "light");
  const page = await context.newPage();
  await page.goto(`${base}${site.prompt}`);
  const versions = page.locator("#version-list > li");
  assert.deepEqual(await versions.evaluateAll((lis) => lis.map((li) => li.dataset.version)), ["3", "2", "1"]);
  // A numbered list would put "1." (or, reversed, "6.") before v3.
  const markers = await versions.evaluateAll((lis) => lis.map((li) => getComputedStyle(li).listStyleType));
  assert.deepEqual(markers, ["none", "none", "none"]);
  const crumbs = await page.locator("nav[aria-label=breadcrumb] li").allInnerTexts();
  assert.deepEqual(crumbs.map((c) => c.trim()), ["Projects", "Accessible project", "Assistant", "Tone"]);
  await context.close();
});
