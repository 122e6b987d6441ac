// Mutation testing of the modules that guard data and access: `npm run test:mutation` (not part of npm test).
// Each mutant is compiled by tsc in a sandbox and judged by the fast tests in jest.mutation.config.js.
// The summary of the last run is reports/mutation.md (scripts/mutation-summary.ts).
export default {
  testRunner: 'jest',
  testRunnerNodeArgs: ['--experimental-vm-modules'],
  jest: { projectType: 'custom', configFile: 'jest.mutation.config.js', enableFindRelatedTests: false },
  buildCommand: 'npx tsc -p tsconfig.json',
  // The checks that guard data and access: checksums, manifest and path validation, the transfer's key
  // proof, the token check, the purge guard. (receiver.ts, sender.ts, protocol.ts, process-runner.ts and
  // seed-store.ts can be added with --mutate; each takes hours on a 2-core machine.)
  mutate: [
    'src/transfer/checksum.ts',
    'src/transfer/manifest.ts',
    'src/transfer/auth.ts',
    'src/http/middleware.ts',
    'src/token.ts',
    'src/validate.ts',
    'src/host/datadir.ts',
  ],
  ignorePatterns: ['dist', 'reports', 'state', '.stryker-tmp'],
  coverageAnalysis: 'perTest',
  // Module-level constants (regular expressions, sets) are static mutants: each would need the whole test run.
  ignoreStatic: true,
  concurrency: 2,
  timeoutMS: 20000,
  reporters: ['clear-text', 'progress', 'json', 'html'],
  jsonReporter: { fileName: 'reports/mutation/mutation.json' },
  htmlReporter: { fileName: 'reports/mutation/mutation.html' },
  tempDirName: '.stryker-tmp',
  cleanTempDir: 'always',
};
