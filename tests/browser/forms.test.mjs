// Forms as a person reads them: a field's hint belongs, by its place, to the field above it.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { base, launch, openPage, register } from "./browser.mjs";

let browser;
const problems = [];
before(async () => { browser = await launch(); });
after(async () => browser?.close());

test("a hint sits nearer its own field than the next field's label", async () => {
  const page = await openPage(browser, problems);
  await register(page, `forms-${Date.now()}@example.com`, "forms pass 1");
  await page.goto(`${base}/account`);
  const gaps = await page.evaluate(() => [...document.querySelectorAll("label + small:not(.field-error)")].map((hint) => {
    const input = hint.previousElementSibling.querySelector("input, select, textarea");
    const next = hint.nextElementSibling;
    const h = hint.getBoundingClientRect();
    return {
      hint: hint.textContent.trim(),
      above: h.top - input.getBoundingClientRect().bottom,
      below: next ? next.getBoundingClientRect().top - h.bottom : Infinity,
    };
  }));
  assert.ok(gaps.some((g) => g.hint.startsWith("What the key is for")), JSON.stringify(gaps));
  for (const g of gaps) assert.ok(g.above < g.below, `"${g.hint}" is ${g.above} px under its input and ${g.below} px over the next field`);
  assert.deepEqual(problems, [], "no console errors or CSP violations");
});
