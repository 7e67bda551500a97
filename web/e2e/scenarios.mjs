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
