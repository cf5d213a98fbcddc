// node layout.mjs FILE CHROMIUM WIDTH -> JSON: page overflow, table and chart boxes, chart label boxes
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
const [file, executablePath, width] = process.argv.slice(2);
const profile = mkdtempSync(join(tmpdir(), "packager-report-"));
const browser = await chromium.launchPersistentContext(profile, {
  executablePath, headless: true, viewport: { width: Number(width), height: 900 },
  args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const page = await browser.newPage();
await page.goto("file://" + file);
const result = await page.evaluate(() => {
  const box = (el) => { const r = el.getBoundingClientRect(); return { left: r.left, right: r.right, top: r.top, bottom: r.bottom }; };
  const svg = document.querySelector("svg");
  return {
    scrollWidth: document.documentElement.scrollWidth, clientWidth: document.documentElement.clientWidth,
    body: box(document.body), tables: [...document.querySelectorAll("table")].map(box),
    svg: svg ? box(svg) : null,
    labels: svg ? [...svg.querySelectorAll("text")].map((t) => ({ text: t.textContent, ...box(t) })) : [],
  };
});
process.stdout.write(JSON.stringify(result) + "\n");
await browser.close();
rmSync(profile, { recursive: true, force: true }); // the profile is Chromium's, ~100 MB
