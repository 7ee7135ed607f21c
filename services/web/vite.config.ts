// Static build: relative asset paths so the same dist/ works behind nginx (compose)
// and when the backend serves it at / (local mode).
import { defineConfig } from "vite";

declare const process: { env: Record<string, string | undefined> };

export default defineConfig({
  base: "./",
  build: { outDir: "dist", emptyOutDir: true, target: "es2022", chunkSizeWarningLimit: 200 },
  server: {
    // `npm run dev` against a local backend: same-origin paths are proxied.
    proxy: Object.fromEntries(
      ["/training", "/nodes", "/models", "/traces", "/auth"].map((p) => [p, { target: process.env.FLOWERBED_API ?? "http://127.0.0.1:8080", changeOrigin: true }]),
    ),
  },
});
