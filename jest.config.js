// Tests are compiled by tsc first (npm test), then run as native ES modules: execa 9 and node-fetch 3 are ESM-only.
export default {
  testEnvironment: 'node',
  roots: ['<rootDir>/dist/test'],
  testMatch: ['**/*.test.js'],
  transform: {},
  testTimeout: 60000,
  // One temp directory per run, removed at its end (test/support/global-setup.ts).
  globalSetup: '<rootDir>/dist/test/support/global-setup.js',
  globalTeardown: '<rootDir>/dist/test/support/global-teardown.js',
};
