import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Hang detectors, not speed checks (speed is measured in bench/): an integration test deploys
    // and starts real hosts, which at load 17 on 2 cores took 60–80 s where a quiet run takes 5.
    testTimeout: 240_000,
    hookTimeout: 300_000,
    pool: "forks",
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
    reporters: ["default"],
  },
});
