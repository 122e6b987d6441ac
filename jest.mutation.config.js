// The fast, in-process tests that guard the modules under mutation testing (npm run test:mutation).
// Stryker builds the mutated sources with tsc, then runs these compiled tests once per mutant.
import base from './jest.config.js';

export default {
  ...base,
  testMatch: [
    '**/dist/test/transfer.test.js',
    '**/dist/test/transfer-partial.test.js',
    '**/dist/test/token-check.test.js',
    '**/dist/test/host-guards.test.js',
    '**/dist/test/process-runner.test.js',
    '**/dist/test/seed-store.test.js',
  ],
};
