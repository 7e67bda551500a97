import { defineConfig } from "vite";
import { svelte } from "@sveltejs/vite-plugin-svelte";

// The UI is embedded in the `parledger` binary and served by every node at
// `/`; in development, `npm run dev` proxies the API to a local node.
export default defineConfig({
  plugins: [svelte()],
  base: "/",
  build: {
    outDir: "dist",
    emptyOutDir: true,
    sourcemap: false,
    chunkSizeWarningLimit: 800,
  },
  server: {
    // PARLEDGER_URL: the node to proxy to (default: the README's demo node).
    proxy: {
      "/v1": process.env.PARLEDGER_URL ?? "http://127.0.0.1:8080",
      "/api-docs": process.env.PARLEDGER_URL ?? "http://127.0.0.1:8080",
    },
  },
  test: {
    include: ["src/**/*.test.ts"],
  },
});
