// Mutation testing of the modules that guard data and access: `npm run test:mutation [MODULE...]`
// (scripts/mutation.sh; not part of npm test or CI). One module per Stryker run, judged only by the fast
// tests that pin it (the table below), with one test process: a module takes minutes on the shared 2-core
// machine. Each mutant is compiled by tsc in a sandbox; every listed test file runs against every mutant
// (coverageAnalysis "off": per-test coverage under native ES modules missed tests that do kill mutants).
// The summary of the last runs is reports/mutation.md (scripts/mutation-summary.ts).
//
// Run by hand: `npx stryker run --mutate src/validate.ts` picks that module's tests from the table too.

/** Module -> the compiled fast test files that judge its mutants. */
export const modules = {
  'src/transfer/checksum.ts': ['transfer-checks'],
  'src/transfer/manifest.ts': ['transfer-checks', 'transfer-walk', 'transfer-partial'],
  'src/transfer/auth.ts': ['transfer-checks'],
  'src/token.ts': ['transfer-checks', 'token-check', 'token-file'],
  'src/http/middleware.ts': ['token-check', 'refusal-log'],
  'src/validate.ts': ['validate', 'transfer-checks'],
  'src/host/datadir.ts': ['host-guards'],
  'src/process-runner.ts': ['process-runner'],
  'src/seeds/seed-store.ts': ['seed-store'],
};

function chosen() {
  const argv = process.argv;
  const i = argv.findIndex((a) => a === '--mutate' || a === '-m');
  const given = i >= 0 ? argv[i + 1] : argv.find((a) => a.startsWith('--mutate='))?.slice('--mutate='.length);
  if (!given) return Object.keys(modules);
  // "src/a.ts,src/b.ts:10-20": the files, without line ranges.
  return given.split(',').map((m) => m.replace(/:[\d:-]+$/, ''));
}

const mutate = chosen();
const tests = [...new Set(mutate.flatMap((m) => modules[m] ?? Object.values(modules).flat()))];
const reportName = mutate.length === 1 ? mutate[0].replace(/^src\//, '').replace(/\.ts$/, '').replaceAll('/', '-') : 'mutation';

export default {
  testRunner: 'jest',
  testRunnerNodeArgs: ['--experimental-vm-modules'],
  jest: {
    projectType: 'custom',
    configFile: 'jest.config.js',
    config: { testMatch: tests.map((t) => `**/dist/test/${t}.test.js`) },
    enableFindRelatedTests: false,
  },
  buildCommand: 'npx tsc -p tsconfig.json',
  mutate,
  ignorePatterns: ['dist', 'reports', 'state', '.stryker-tmp'],
  coverageAnalysis: 'off',
  // Module-level constants (the name patterns, the purge guard's system directories) are mutated too: with
  // a few fast test files per module, running them all for such a mutant costs seconds.
  ignoreStatic: false,
  concurrency: Number(process.env.STRYKER_CONCURRENCY ?? 1),
  // Added to 1.5 x the tests' own time before a mutant counts as hanging (killed by timeout).
  timeoutMS: Number(process.env.STRYKER_TIMEOUT_MS ?? 20000),
  reporters: ['clear-text', 'progress', 'json'],
  jsonReporter: { fileName: `reports/mutation/${reportName}.json` },
  tempDirName: '.stryker-tmp',
  cleanTempDir: 'always',
};
