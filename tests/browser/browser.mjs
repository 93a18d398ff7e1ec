// Walks the Kiada HTML page in Debian's headless Chromium, as a person would:
//   node browser.mjs <kiada base URL> <screenshot directory> <kiada URL whose quiz is down>
//                    <the local suite's kiada URL>
// Exits non-zero, saying why, when anything is off.
import { chromium } from "playwright-core";
import assert from "node:assert/strict";

const [base, shots, broken, suite] = process.argv.slice(2);
assert.ok(base && shots && broken && suite,
  "usage: node browser.mjs <kiada URL> <screenshot directory> <kiada URL whose quiz is down> <suite's kiada URL>");

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

// The drawn path of a page view: every box's words checked against what /api says of the
// same kind of call (the pod that answered, the address dialled), then a page whose quiz is
// down, drawn up to where the call stopped.
async function path() {
  const page = await browser.newPage();
  const problems = watch(page);
  const box = (role, service) =>
    page.locator(`#path g[data-role="${role}"][data-service="${service}"]`);
  const title = async (role, service) => (await box(role, service).locator("text.title").textContent()).trim();
  const detail = async (role, service) => (await box(role, service).locator("text.detail").textContent()).trim();
  // The page and /api are two views, two calls: compare each with its own answer, over
  // reloads until both name the same quote pod (a Service picks per connection).
  let matched = false;
  for (let i = 0; i < 20 && !matched; i++) {
    await page.goto(`${base}/html`);
    const api = await (await page.request.get(`${base}/api`, { headers: { accept: "application/json" } })).json();
    const drawnPod = await title("pod", "quote");
    assert.match(drawnPod, /^quote-[123]$/, "the answering quote pod is named");
    assert.equal(await title("pod", "quiz"), "quiz-a", "quiz's pod is named");
    assert.match(await title("dialled", "quote"), /^127\.0\.0\.1:\d+$/);
    if (drawnPod === api.tip.pod) {
      assert.equal(await title("dialled", "quote"), api.tip.remote, "the address dialled, as /api says");
      assert.equal(await title("name", "quote"), "an IP address");
      matched = true;
    }
  }
  assert.ok(matched, "a page and /api named the same quote pod within twenty loads");
  assert.equal(await page.locator("#path g[data-role=failure]").count(), 0, "nothing failed");
  await page.locator("#path-card").screenshot({ path: `${shots}/path.png` });

  await page.goto(`${broken}/html`);
  const failed = await (await page.request.get(`${broken}/api`, { headers: { accept: "application/json" } })).json();
  assert.equal(failed.question.error.kind, "refused");
  assert.equal(await title("failure", "quiz"), "✗ failed");
  assert.equal(await detail("failure", "quiz"), "refused", "the failure's kind, as /api says");
  assert.equal(await box("pod", "quiz").count(), 0, "no quiz pod answered");
  assert.equal(await box("pod", "quote").count(), 1, "quote still did");
  await page.locator("#path-card").screenshot({ path: `${shots}/path-failed.png` });
  assert.deepEqual(problems, [], "no console errors with a drawing (CSP included)");
  await page.close();
}

async function labs() {
  const page = await browser.newPage();
  const problems = watch(page);
  await page.goto(`${base}/html`);
  await page.click("#labs-link");
  await page.waitForURL(/\/lab$/);

  // The spread, drawn on the server: one row per pod, a bar for new and one for reused
  // connections, in the pod's colour as the page's own script computes it.
  await page.fill("#spread-form input[name=n]", "30");
  await page.click("#spread-form button[type=submit]");
  await page.waitForSelector("#spread-chart");
  const rows = await page.locator("#spread-chart g.spread-row").count();
  const answered = Number((await text(page, "#spread-summary")).match(/(\d+) pod\(s\) answered/)[1]);
  assert.ok(rows >= 1, "at least one pod drawn");
  assert.equal(rows, answered, "one row per pod that answered");
  for (let i = 0; i < rows; i++) {
    const row = page.locator("#spread-chart g.spread-row").nth(i);
    assert.equal(await row.locator("rect.bar.new").count(), 1, "a bar for new connections");
    assert.equal(await row.locator("rect.bar.reused").count(), 1, "a bar for the reused one");
    const pod = await row.getAttribute("data-pod");
    const fill = await row.locator("rect.bar.new").getAttribute("fill");
    assert.equal(fill, await page.evaluate((p) => window.kiadaPodColour(p), pod),
      "the server and the script give a pod the same colour");
    const box = await row.locator("rect.bar.new").boundingBox();
    assert.ok(box && box.width > 0, "the bar is drawn");
  }
  // And drawn as a path: this kiada pod, the Service, a box per pod with its calls.
  assert.equal(await page.locator("#spread-path g[data-role=pod]").count(), rows,
    "the path names every pod the chart shows");
  await page.screenshot({ path: `${shots}/lab-spread.png`, fullPage: true });
  // The HTTP/2 run, linked as text: every call a stream on one connection, so one pod.
  const h2 = await page.request.get(new URL(await page.getAttribute("#spread-h2", "href"), page.url()).href);
  const h2Text = await h2.text();
  assert.match(h2Text, /as HTTP\/2 streams over one\s+connection/, h2Text);
  assert.match(h2Text, /^1 pod\(s\) answered; 0 call\(s\) failed\.$/m, h2Text);

  // The watch, drawn live from its events.
  await page.fill("#watch-form input[name=interval_ms]", "100");
  await page.fill("#watch-form input[name=duration_s]", "3");
  await page.click("#watch-start");
  await page.waitForFunction(() => document.querySelectorAll("#timeline rect.mark").length >= 5);
  assert.ok(await page.locator("#watch-stop").isVisible(), "a watch can be stopped");
  await page.waitForSelector("#summary-pods", { timeout: 10000 });
  assert.ok(await page.locator("#timeline").isVisible(), "the timeline shows");
  const marks = await page.locator("#timeline rect.mark").count();
  const timelineRows = await page.locator("#timeline g.row").count();
  assert.ok(timelineRows >= 2, `a row per pod: ${timelineRows}`);
  assert.ok(marks >= 25 && marks <= 31, `a mark per call: ${marks}`);
  assert.match(await text(page, "#transitions"), /answered for the first time/);
  assert.match(await text(page, "#watch-status"), /^Done: \d+ call\(s\)/);
  const summaryRows = await page.locator("#summary-pods tr").count();
  assert.ok(summaryRows >= 2, "the summary lists the pods");
  await page.screenshot({ path: `${shots}/lab-watch.png`, fullPage: true });
  assert.deepEqual(problems, [], "no console errors on the lab page (CSP violations included)");
  await page.close();

  // Without JavaScript the spread still draws, and the page says what the timeline needs.
  const context = await browser.newContext({ javaScriptEnabled: false });
  const plain = await context.newPage();
  const plainProblems = watch(plain);
  await plain.goto(`${base}/lab`);
  // (Chromium parses <noscript> as text when only execution is switched off, as here: check
  // what it says rather than whether it shows.)
  assert.match(await plain.locator("noscript").textContent(), /The live timeline needs\s+JavaScript/);
  await plain.click("#spread-form button[type=submit]");
  await plain.waitForSelector("#spread-chart");
  assert.ok((await plain.locator("#spread-chart g.spread-row").count()) >= 1);
  assert.deepEqual(plainProblems, [], "no errors on the lab page without JavaScript");
  await context.close();
}

// The local suite's pods section on /lab: every pod the suite runs, as /lab/pods lists them;
// Delete stops one and its Deployment starts another; a rollout replaces quote's pods.
async function pods() {
  const page = await browser.newPage();
  const problems = watch(page);
  const listed = async () =>
    (await (await page.request.get(`${suite}/lab/pods`, { headers: { accept: "application/json" } })).json()).pods;
  const shown = async () => page.$$eval("#pods-table tbody tr", (rows) => rows.map((r) => ({
    name: r.dataset.pod,
    cells: [...r.querySelectorAll("td")].map((td) => td.textContent),
  })));
  await page.goto(`${suite}/lab`);
  await page.waitForFunction(() => document.querySelectorAll("#pods-table tbody tr").length >= 5);
  const before = await listed();
  const rows = await shown();
  assert.deepEqual(rows.map((r) => r.name).sort(), before.map((p) => p.name).sort(),
    "a row per pod of /lab/pods");
  for (const name of ["quote-1", "quote-2", "quote-3"]) {
    const row = rows.find((r) => r.name === name);
    assert.ok(row, `${name} is listed`);
    assert.equal(row.cells[1], "quote", `${name}'s Service`);
    assert.equal(row.cells[2], "ready", `${name} is ready`);
    assert.equal(row.cells[3], "yes", `${name} gets new connections`);
    assert.match(row.cells[4], /^http:\/\/127\.0\.0\.1:\d+$/, `${name}'s admin address`);
  }
  assert.ok(rows.some((r) => r.cells[1] === "quiz"), "quiz's pod is listed");
  assert.ok(rows.some((r) => r.cells[1] === "kiada"), "kiada's pod is listed");

  // Delete: the pod drains and its Deployment starts another in its place.
  await page.click('#pods-table tr[data-pod="quote-1"] button');
  await page.waitForFunction(() => /quote-1 deleted/.test(document.querySelector("#pods-status").textContent));
  await page.waitForSelector('#pods-table tr[data-pod="quote-4"]', { timeout: 15000 });
  await page.waitForSelector('#pods-table tr[data-pod="quote-1"]', { state: "detached", timeout: 15000 });
  assert.ok((await listed()).some((p) => p.name === "quote-4"), "/lab/pods agrees: quote-4 runs");

  // A rollout from the page: quote's pods replaced one by one by new ones.
  await page.click('button[data-rollout="quote"]');
  await page.waitForFunction(() => /Rolling out quote/.test(document.querySelector("#pods-status").textContent));
  await page.screenshot({ path: `${shots}/lab-pods.png`, fullPage: true });
  await page.waitForFunction(() => {
    const names = [...document.querySelectorAll("#pods-table tbody tr")].map((r) => r.dataset.pod);
    return ["quote-2", "quote-3", "quote-4"].every((old) => !names.includes(old))
      && names.filter((n) => /^quote-\d+$/.test(n)).length === 3;
  }, null, { timeout: 45000 });
  const after = (await listed()).filter((p) => p.service === "quote");
  assert.equal(after.length, 3, "three quote pods after the rollout");
  assert.ok(after.every((p) => p.state === "ready"), "every new pod is ready");
  assert.deepEqual(problems, [], "no console errors on the suite's lab page (CSP included)");
  await page.close();
}

try {
  await withJavaScript();
  await withoutJavaScript();
  await path();
  await labs();
  await pods();
  console.log("browser test passed");
} finally {
  await browser.close();
}
