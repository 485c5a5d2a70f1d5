/** Jest runs the TypeScript sources as ESM through ts-jest. */
export default {
  // Each file removes what it made (test/harness/cleanup.ts, run by environment.mjs once
  // the file's own hooks are done); the run fails if anything is left (global-teardown.mjs).
  testEnvironment: '<rootDir>/test/harness/environment.mjs',
  setupFilesAfterEnv: ['<rootDir>/test/harness/cleanup.ts'],
  globalSetup: '<rootDir>/test/harness/global-setup.mjs',
  globalTeardown: '<rootDir>/test/harness/global-teardown.mjs',
  extensionsToTreatAsEsm: ['.ts'],
  moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
  transform: {
    '^.+\\.ts$': [
      'ts-jest',
      { useESM: true, tsconfig: 'tsconfig.json', diagnostics: { ignoreCodes: [151002] } },
    ],
  },
  testMatch: ['<rootDir>/test/**/*.test.ts'],
  testTimeout: 60000,
};
