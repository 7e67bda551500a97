// The browser scenarios: each gets a fresh browser context (no session).
import assert from "node:assert/strict";

export const PASSWORD = "parledger-demo";

/** Signs in through the form and waits for the shell. */
export async function signIn(page, base, user) {
  await page.goto(`${base}/`);
  await page.getByLabel("User").fill(user);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("navigation", { name: "Main" }).waitFor();
}

export const scenarios = [
  [
    "sign-in",
    async ({ page, base, shot }) => {
      await page.goto(`${base}/`);
      await shot("form");
      // A wrong password shows the server's problem code.
      await page.getByLabel("User").fill("alice@acme-bank");
      await page.getByLabel("Password").fill("wrong password");
      await page.getByRole("button", { name: "Sign in" }).click();
      await page.getByRole("alert").filter({ hasText: "AUTH:BAD_CREDENTIALS" }).waitFor();
      await signIn(page, base, "alice@acme-bank");
      const who = page.getByLabel("Signed in as");
      assert.match(await who.innerText(), /alice[\s\S]*acme-bank[\s\S]*member/);
      // A member sees no Admin page.
      assert.equal(await page.getByRole("link", { name: "Admin" }).count(), 0);
      await shot("dashboard");
      await page.getByRole("button", { name: "Sign out" }).click();
      await page.getByLabel("User").waitFor();
    },
  ],
];

const GTIN = "9506000134406";
const GTIN14 = "09506000134406";
const LOT = "E2E-LOT-1";
const PATIENT = "pt-e2e-0001";
const SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

scenarios.push(
  [
    "finance",
    async ({ page, base, shot }) => {
      await signIn(page, base, "alice@acme-bank");
      await page.goto(`${base}/#/finance`);
      const tf = page.getByRole("form", { name: "Make a transfer" });
      await tf.getByLabel("From account").locator("option").first().waitFor({ state: "attached" });
      await tf.getByLabel("From account").selectOption("operating");
      // Validation before anything is sent.
      await tf.getByLabel("To organization").fill("Globex Logistics");
      await tf.getByRole("button", { name: "Transfer" }).click();
      assert.ok((await tf.locator("small.err").count()) > 0, "the form accepted a bad organization id");
      // A transfer to another organization.
      await tf.getByLabel("To organization").fill("globex-logistics");
      await tf.getByLabel("To account").fill("operating");
      await tf.getByLabel("Amount").fill("12.34");
      await tf.getByLabel("Reference (optional)").fill("E2E-1");
      await tf.getByRole("button", { name: "Transfer" }).click();
      await page.getByText("Transfer committed").waitFor();
      await shot("committed");
      // A transfer the ledger rejects is shown with its code.
      await tf.getByLabel("From account").selectOption("fees");
      await tf.getByLabel("Amount").fill("999,999");
      await tf.getByRole("button", { name: "Transfer" }).click();
      await page.getByText("Transfer rejected").waitFor();
      await page.getByText("FINANCE:INSUFFICIENT_FUNDS").first().waitFor();
      await shot("rejected");
      // The account's history shows the transfer.
      await page.goto(`${base}/#/finance/account/acme-bank/operating`);
      await page.getByRole("table", { name: "History of acme-bank/operating" }).waitFor();
      await shot("history");
    },
  ],
  [
    "supply-chain",
    async ({ base, shot, login }) => {
      const bob = await login("bob@umbrella-pharma");
      await bob.goto(`${base}/#/supply-chain/products`);
      const rp = bob.getByRole("form", { name: "Register a product" });
      await rp.getByLabel("GTIN").fill(GTIN);
      await rp.getByLabel("Name").fill("E2E vaccine, 1 x 0.5 ml");
      await rp.getByLabel("Min °C (optional)").fill("2");
      await rp.getByLabel("Max °C (optional)").fill("8");
      await rp.getByRole("button", { name: "Register product" }).click();
      await bob.getByText("Product registration committed").waitFor();
      const rl = bob.getByRole("form", { name: "Register a lot" });
      await rl.getByLabel("Product").locator(`option[value="${GTIN14}"]`).waitFor({ state: "attached" });
      await rl.getByLabel("Product").selectOption(GTIN14);
      await rl.getByLabel("Lot number").fill(LOT);
      await rl.getByLabel("Quantity").fill("250");
      await rl.getByLabel("Expiry date").fill("2030-12-31");
      await rl.getByRole("button", { name: "Register lot" }).click();
      await bob.getByText("Lot registration committed").waitFor();
      await shot("products", bob);
      // Ship the lot to the carrier, who accepts custody.
      await bob.goto(`${base}/#/supply-chain/shipments`);
      const sf = bob.getByRole("form", { name: "Create a shipment" });
      await sf.getByLabel("Shipment id").fill("SH-E2E-1");
      await sf.getByLabel("To organization").fill("globex-logistics");
      await sf.getByLabel(new RegExp(LOT)).check();
      await sf.getByRole("button", { name: "Create shipment" }).click();
      await bob.getByText("Shipment committed").waitFor();
      const carol = await login("carol@globex-logistics");
      await carol.goto(`${base}/#/supply-chain/shipments`);
      await carol.getByRole("button", { name: "Accept shipment SH-E2E-1" }).click();
      await carol.getByText("Accepting shipment SH-E2E-1 committed").waitFor();
      await shot("accepted", carol);
      // A checkpoint outside the cold chain flags the lot on its timeline.
      await carol.goto(`${base}/#/supply-chain/lot/umbrella-pharma/${GTIN14}/${LOT}`);
      const cp = carol.getByRole("form", { name: "Record a checkpoint" });
      await cp.getByLabel("Location").fill("A2 reefer truck 9");
      await cp.getByLabel("Temperature °C (optional)").fill("9.7");
      await cp.getByRole("button", { name: "Record checkpoint" }).click();
      await carol.getByText("outside the product's rule").waitFor();
      const timeline = carol.getByRole("list", { name: `Provenance of lot ${LOT}` });
      await timeline.getByText(/breach/i).first().waitFor();
      await shot("timeline", carol);
    },
  ],
  [
    "healthcare",
    async ({ base, shot, login }) => {
      const dave = await login("dave@initech-health");
      await dave.goto(`${base}/#/healthcare`);
      const rp = dave.getByRole("form", { name: "Register a patient" });
      await rp.getByLabel("Pseudonym").fill(PATIENT);
      await rp.getByRole("button", { name: "Register" }).click();
      await dave.getByText("Patient registration committed").waitFor();
      await dave.goto(`${base}/#/healthcare/patient/initech-health/${PATIENT}`);
      const ar = dave.getByRole("form", { name: "Add a record reference" });
      await ar.getByLabel("Record id").fill("r-e2e-1");
      await ar.getByLabel("Size (bytes)").fill("24576");
      await ar.getByLabel("Content SHA-256 (hex)").fill(SHA);
      await ar.getByLabel(/^Pointer/).fill("https://records.initech-health.example/docs/r-e2e-1");
      await ar.getByRole("button", { name: "Add record" }).click();
      await dave.getByText("Record committed").waitFor();
      const gc = dave.getByRole("form", { name: "Grant a consent" });
      await gc.getByLabel("Consent id").fill("e2e-consent-1");
      await gc.getByLabel("Grantee organization").fill("umbrella-pharma");
      const d = new Date(Date.now() + 30 * 86400000).toISOString().slice(0, 10);
      await gc.getByLabel("Expires (end of day, UTC)").fill(d);
      await gc.getByRole("button", { name: "Grant consent" }).click();
      await dave.getByText("Consent committed").waitFor();
      // The grantee reads the record's pointer under the consent.
      const bob = await login("bob@umbrella-pharma");
      await bob.goto(`${base}/#/healthcare/received`);
      await bob.getByRole("button", { name: `Use consent e2e-consent-1 of ${PATIENT}` }).click();
      const ax = bob.getByRole("form", { name: "Request access to a record" });
      await ax.getByLabel("Record id").fill("r-e2e-1");
      await ax.getByRole("button", { name: "Read pointer" }).click();
      await bob.getByText("Access committed").waitFor();
      await shot("access", bob);
      // The custodian sees the access in the log.
      await dave.reload();
      await dave.getByRole("table", { name: "Access log" }).getByText("umbrella-pharma").first().waitFor();
      await shot("access-log", dave);
    },
  ],
  [
    "isolation",
    async ({ page, base, shot }) => {
      // A member of acme-bank cannot see another organization's data.
      await signIn(page, base, "alice@acme-bank");
      await page.goto(`${base}/#/finance/account/globex-logistics/operating`);
      await page.getByRole("alert").filter({ hasText: "AUTH:FORBIDDEN" }).first().waitFor();
      await shot("finance-refused");
      await page.goto(`${base}/#/healthcare/patient/initech-health/${PATIENT}`);
      await page.getByRole("alert").filter({ hasText: "AUTH:FORBIDDEN" }).first().waitFor();
      await shot("healthcare-refused");
    },
  ],
);

scenarios.push(
  [
    "dashboard-and-explorer",
    async ({ page, base, shot, login }) => {
      await signIn(page, base, "alice@acme-bank");
      // The dashboard follows the stream: a transfer made now shows up.
      await page.goto(`${base}/#/`);
      await page.getByRole("heading", { name: "Cluster" }).waitFor();
      const other = await login("alice@acme-bank");
      await other.goto(`${base}/#/finance`);
      const tf = other.getByRole("form", { name: "Make a transfer" });
      await tf.getByLabel("From account").locator("option").first().waitFor({ state: "attached" });
      await tf.getByLabel("From account").selectOption("operating");
      await tf.getByLabel("To organization").fill("umbrella-pharma");
      await tf.getByLabel("To account").fill("operating");
      await tf.getByLabel("Amount").fill("1.00");
      await tf.getByRole("button", { name: "Transfer" }).click();
      await other.getByText("Transfer committed").waitFor();
      const txLink = other.locator('a[href^="#/explorer/tx/"]').first();
      const href = await txLink.getAttribute("href");
      const id = decodeURIComponent(href.split("/").pop());
      // Tables show ids shortened: match the start.
      await page.getByText(id.slice(0, 12)).first().waitFor();
      await shot("dashboard");
      // The explorer shows the transaction; its receipt verifies in the browser.
      await page.goto(`${base}/${href}`);
      await page.getByRole("button", { name: "Verify in this browser" }).click();
      await page.getByText("Receipt verified").waitFor();
      await shot("receipt-verified");
      await page.goto(`${base}/#/explorer`);
      await page.locator('a[href^="#/explorer/block/"]').first().waitFor();
      await shot("blocks");
    },
  ],
  [
    "audit-and-admin",
    async ({ page, base, shot, login }) => {
      // The auditor searches everyone's trail and verifies the chain.
      await signIn(page, base, "audrey@acme-bank");
      await page.goto(`${base}/#/audit`);
      await page.getByRole("button", { name: "Search" }).click();
      await page.locator("tbody tr").first().waitFor();
      await page.getByRole("button", { name: "Verify the chain" }).click();
      await page.getByRole("status").filter({ hasText: "blocks and" }).waitFor();
      await shot("auditor");
      // An admin adds a user, who can then sign in.
      const admin = await login("admin@acme-bank");
      await admin.goto(`${base}/#/admin`);
      const form = admin.getByRole("form", { name: /Add a user/ });
      await form.getByLabel("User name").fill("erin");
      await form.getByLabel("Password", { exact: true }).fill("erin-long-password");
      await form.getByLabel("Confirm the password").fill("erin-long-password");
      await form.getByLabel("member").check();
      await form.getByRole("button", { name: "Add user" }).click();
      await admin.getByText("Added erin@acme-bank").waitFor();
      await admin.getByRole("cell", { name: /^erin@acme-bank/ }).waitFor();
      await shot("admin", admin);
      const erin = await page.context().browser().newContext();
      const p = await erin.newPage();
      await p.goto(`${base}/`);
      await p.getByLabel("User").fill("erin@acme-bank");
      await p.getByLabel("Password").fill("erin-long-password");
      await p.getByRole("button", { name: "Sign in" }).click();
      await p.getByRole("navigation", { name: "Main" }).waitFor();
      await erin.close();
    },
  ],
);

const HOOLI_PASSWORD = "hooli-root-passphrase";

scenarios.push([
  "governance",
  async ({ page, base, shot, login }) => {
    // An admin sees the rules in force and the demo's three admissions.
    await signIn(page, base, "admin@acme-bank");
    await page.getByRole("link", { name: "Governance" }).click();
    await page.getByRole("heading", { name: "Governance" }).waitFor();
    const proposals = page.getByRole("table", { name: "Proposals" });
    for (const name of ["Umbrella Pharma", "Globex Logistics", "Initech Health"]) {
      const row = proposals.getByRole("row", { name: new RegExp(`Admit ${name}`) });
      await row.getByText("passed", { exact: true }).waitFor();
    }
    await proposals.getByRole("row", { name: /Admit initech-health \(Initech Health\)/ }).waitFor();
    await page.getByText(/^v\d+ at block/).waitFor();
    // The details show each organization's ballot.
    await page.getByRole("button", { name: "ballots and details" }).first().click();
    await page.getByRole("table", { name: /^Ballots on/ }).first().waitFor();
    await shot("proposals");

    // Validation before anything is sent, then a proposal to admit Hooli.
    const form = page.getByRole("form", { name: "New proposal" });
    await form.getByLabel("Kind").selectOption("add_org");
    await form.getByLabel("Organization id").fill("Hooli Inc");
    await form.getByRole("button", { name: "Propose" }).click();
    assert.ok((await form.locator("small.field-error").count()) >= 3, "the form accepted an invalid proposal");
    await form.getByLabel("Title (optional)").fill("Admit Hooli");
    await form.getByLabel("Organization id").fill("hooli");
    await form.getByLabel("Display name").fill("Hooli");
    await form.getByLabel("First admin's user name").fill("root");
    await form.getByLabel("Password", { exact: true }).fill(HOOLI_PASSWORD);
    await form.getByLabel("Confirm the password").fill(HOOLI_PASSWORD);
    await form.getByText("Admit hooli (Hooli)").waitFor();
    await form.getByRole("button", { name: "Propose" }).click();
    await page.getByRole("status").filter({ hasText: "Proposed “Admit Hooli”" }).waitFor();
    const hooli = (p) => p.getByRole("table", { name: "Proposals" }).getByRole("row", { name: /Admit Hooli/ });
    await hooli(page).getByText("open", { exact: true }).waitFor();
    await hooli(page).getByText("1 of 3").waitFor();
    // The proposer's organization has voted already.
    await hooli(page).getByText("voted for").waitFor();
    assert.equal(await hooli(page).getByRole("button", { name: /^Vote/ }).count(), 0);
    await shot("proposed");

    // A plain member reads the proposals but neither proposes nor votes.
    const alice = await login("alice@acme-bank");
    await alice.goto(`${base}/#/governance`);
    await hooli(alice).getByText("open", { exact: true }).waitFor();
    assert.equal(await alice.getByRole("form", { name: "New proposal" }).count(), 0, "a member sees the propose form");
    assert.equal(await alice.getByRole("button", { name: /^Vote (for|against)/ }).count(), 0, "a member sees vote buttons");
    await shot("member", alice);

    // Two more admins vote for it: a majority of four, and it passes.
    const umbrella = await login("admin@umbrella-pharma");
    await umbrella.goto(`${base}/#/governance`);
    await umbrella.getByRole("button", { name: "Vote for Admit Hooli" }).click();
    await umbrella.getByRole("status").filter({ hasText: "umbrella-pharma voted for “Admit Hooli”" }).waitFor();
    await hooli(umbrella).getByText("2 of 3").waitFor();
    assert.equal(await umbrella.getByRole("button", { name: "Vote for Admit Hooli" }).count(), 0);
    // Initech's admin opens the page while it is still open…
    const initech = await login("admin@initech-health");
    await initech.goto(`${base}/#/governance`);
    await initech.getByRole("button", { name: "Vote for Admit Hooli" }).waitFor();
    const globex = await login("admin@globex-logistics");
    await globex.goto(`${base}/#/governance`);
    await globex.getByRole("button", { name: "Vote for Admit Hooli" }).click();
    await hooli(globex).getByText("passed", { exact: true }).waitFor();
    await hooli(globex).getByText("3 of 3").waitFor();
    await hooli(globex).getByRole("button", { name: "ballots and details" }).click();
    await globex.getByText("hooli admitted with admin root").waitFor();
    await shot("passed", globex);
    // …and votes after the deciding ballot: refused with the server's code,
    // and the row shows the proposal as it now is.
    await initech.getByRole("button", { name: "Vote for Admit Hooli" }).click();
    await initech.getByRole("alert").filter({ hasText: "GOVERNANCE:PROPOSAL_CLOSED" }).waitFor();
    await hooli(initech).getByText("passed", { exact: true }).waitFor();
    assert.equal(await initech.getByRole("button", { name: /^Vote (for|against) Admit Hooli/ }).count(), 0);
    await shot("refused", initech);

    // The new organization's first admin signs in.
    const ctx = await page.context().browser().newContext();
    try {
      const root = await ctx.newPage();
      await root.goto(`${base}/`);
      await root.getByLabel("User").fill("root@hooli");
      await root.getByLabel("Password").fill(HOOLI_PASSWORD);
      await root.getByRole("button", { name: "Sign in" }).click();
      await root.getByRole("navigation", { name: "Main" }).waitFor();
      assert.match(await root.getByLabel("Signed in as").innerText(), /root[\s\S]*hooli[\s\S]*admin/);
    } finally {
      await ctx.close();
    }
  },
]);
