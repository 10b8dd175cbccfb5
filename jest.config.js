/** One jest run over every workspace; sources are compiled on the fly by swc, no build needed. */
module.exports = {
  testEnvironment: 'node',
  transform: {
    '^.+\\.ts$': ['@swc/jest', { jsc: { parser: { syntax: 'typescript' }, target: 'es2022' }, module: { type: 'commonjs' } }],
  },
  moduleNameMapper: {
    '^@burrow/(protocol|mux|bus)$': '<rootDir>/packages/$1/src',
    '^@burrow/(relay|agent)$': '<rootDir>/apps/$1/src',
  },
  testMatch: ['<rootDir>/**/test/**/*.test.ts'],
  testPathIgnorePatterns: ['/node_modules/', '/dist/'],
  testTimeout: 20_000,
  maxWorkers: 2,
};
