// Unit tests of the pure modules (panels, snapshot reducer, formatting) in a DOM implementation without a browser;
// the real-browser tests are tests/test_dashboard*.py at the repository root.
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: { environment: "happy-dom", include: ["tests/**/*.test.ts"] },
});
