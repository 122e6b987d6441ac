// The fast, in-process tests that guard the modules under mutation testing (npm run test:mutation).
// Stryker builds the mutated sources with tsc, then runs these compiled tests once per mutant. The
// end-to-end transfer tests (transfer.test.ts: MiB-sized trees, SIGKILLed peers, TLS) are left out: with
// them a run over these modules takes hours on the 2-core machine instead of minutes.
import base from './jest.config.js';

export default {
  ...base,
  testMatch: [
    '**/dist/test/transfer-partial.test.js',
    '**/dist/test/transfer-checks.test.js',
    '**/dist/test/token-check.test.js',
    '**/dist/test/host-guards.test.js',
  ],
};
