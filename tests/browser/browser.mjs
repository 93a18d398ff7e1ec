// Walks the Kiada HTML page in Debian's headless Chromium, as a person would:
//   node browser.mjs <kiada base URL> <screenshot directory>
// Exits non-zero, saying why, when anything is off.
import { chromium } from "playwright-core";
import assert from "node:assert/strict";

const [base, shots] = process.argv.slice(2);
assert.ok(base && shots, "usage: node browser.mjs <kiada URL> <screenshot directory>");

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  // The machine has no internet: keep Chromium from reaching for it.
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"],
});

function watch(page) {
  const problems = [];
  page.on("console", (m) => { if (m.type() === "error") problems.push(`console: ${m.text()}`); });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("requestfailed", (r) => problems.push(`request failed: ${r.url()}`));
  return problems;
}

const text = async (page, selector) => ((await page.textContent(selector)) ?? "").trim();

async function withJavaScript() {
  const page = await browser.newPage();
  const problems = watch(page);
  await page.goto(`${base}/`);
  assert.match(page.url(), /\/html$/, "a browser lands on the HTML page");
  assert.ok((await text(page, "#tip .tip")).length > 0, "the tip shows");
  const first = await text(page, "#question-text");
  assert.ok(first.length > 0, "the question shows");
  assert.equal(await page.locator("#next").isVisible(), false, "no next button before answering");

  let question = first;
  for (let round = 0; round < 6; round++) {
    await page.locator("#answers button.answer").first().click();
    await page.waitForSelector("#answers button.correct");
    assert.match(await text(page, "#verdict"), /^(Correct!|Incorrect\.)$/);
    if (round === 0) await page.screenshot({ path: `${shots}/answered.png`, fullPage: true });
    await page.click("#next");
    await page.waitForFunction(() => document.querySelector("#verdict").textContent === ""
      && !document.querySelector("#answers button.correct"));
    question = await text(page, "#question-text");
    // Questions are random: the same one may come twice; a new one must come soon.
    if (question !== first) break;
  }
  assert.notEqual(question, first, "next question loads a new question in place");
  assert.match(page.url(), /\/html$/, "answered in place, without leaving the page");
  await page.screenshot({ path: `${shots}/next-question.png`, fullPage: true });
  assert.deepEqual(problems, [], "no console errors");
  await page.close();
}

async function withoutJavaScript() {
  const context = await browser.newContext({ javaScriptEnabled: false });
  const page = await context.newPage();
  const problems = watch(page);
  await page.goto(`${base}/html`);
  await page.locator("#answers button.answer").nth(1).click();
  await page.waitForURL(/\/html\/answer$/);
  assert.match(await text(page, "#verdict"), /^(Correct!|Incorrect\.)$/);
  assert.equal(await page.locator(".answer.correct").count(), 1, "the right answer is marked");
  await page.screenshot({ path: `${shots}/answered-without-js.png`, fullPage: true });
  await page.click("#next");
  await page.waitForURL(/\/html$/);
  assert.ok((await text(page, "#question-text")).length > 0, "back to a question");
  assert.deepEqual(problems, [], "no errors without JavaScript");
  await context.close();
}

try {
  await withJavaScript();
  await withoutJavaScript();
  console.log("browser test passed");
} finally {
  await browser.close();
}
