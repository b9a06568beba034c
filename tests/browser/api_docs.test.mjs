// The API docs page: Swagger UI draws every operation from /api/openapi.json at phone and
// desktop width, under the page's own CSP, with no console error, and "Try it out" works.
import { test } from "node:test";
import assert from "node:assert/strict";
import { base, launch, openPage, register } from "./browser.mjs";

for (const [label, width, height] of [["phone", 390, 844], ["desktop", 1280, 900]]) {
  test(`the API docs page shows every operation: ${label}`, async () => {
    const browser = await launch();
    const problems = [];
    try {
      const page = await openPage(browser, problems);
      await page.setViewportSize({ width, height });
      const spec = await (await fetch(`${base}/api/openapi.json`)).json();
      const operations = Object.values(spec.paths)
        .flatMap((item) => Object.keys(item).filter((k) => ["get", "post", "put", "patch", "delete"].includes(k)))
        .length;
      await page.goto(`${base}/api/docs`);
      await page.locator(".opblock").first().waitFor();
      assert.equal(await page.locator(".opblock").count(), operations);
      await page.screenshot({ path: `${process.env.SCREENSHOTS ?? "/tmp"}/api-docs-${label}.png`, fullPage: false });

      // Try the document's own operation from the page.
      const own = page.locator(".opblock", { hasText: "/api/openapi.json" });
      await own.locator(".opblock-summary").click();
      await own.getByRole("button", { name: "Try it out" }).click();
      await own.getByRole("button", { name: "Execute" }).click();
      await own.locator(".live-responses-table .response-col_status", { hasText: "200" }).first().waitFor();
      assert.deepEqual(problems, []);
    } finally {
      await browser.close();
    }
  });
}

test("signed in to the site, Try it out changes things with the browser's own session", async () => {
  const browser = await launch();
  const problems = [];
  try {
    const page = await openPage(browser, problems);
    await register(page, `docs-${Date.now()}@example.com`, process.env.JOURNEY_PASSWORD);
    await page.goto(`${base}/api/docs`);
    const create = page.locator(".opblock-post", { hasText: "/api/projects" }).filter({ hasNotText: "{id}" }).first();
    await create.locator(".opblock-summary").click();
    await create.getByRole("button", { name: "Try it out" }).click();
    await create.getByRole("button", { name: "Execute" }).click();
    await create.locator(".live-responses-table .response-col_status", { hasText: "201" }).first().waitFor();
    assert.deepEqual(problems, []);
  } finally {
    await browser.close();
  }
});
