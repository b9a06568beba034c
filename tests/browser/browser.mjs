// Shared by the browser journeys: Chromium from Debian, launched the way this machine allows.
import { chromium } from "playwright-core";

export const base = process.env.CONFAB_URL ?? "http://127.0.0.1:8080";

export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
}

/** A page that records console errors and CSP violations into `problems`. */
export async function openPage(browser, problems) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on("console", (m) => { if (m.type() === "error") problems.push(m.text()); });
  page.on("pageerror", (e) => problems.push(String(e)));
  return page;
}

export async function register(page, email, password) {
  await page.goto(`${base}/register`);
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Create account" }).click();
  // The chat home, with a welcome notice (`?welcome=1`).
  await page.waitForURL((url) => url.pathname === "/chat");
}
