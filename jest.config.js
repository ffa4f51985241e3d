// One Jest run over every package. Sources are TypeScript (ESM with .js import suffixes);
// @swc/jest compiles them to CommonJS for Jest, and the workspace packages are mapped to
// their sources so tests never run against a stale build.
const swc = [
  '@swc/jest',
  {
    jsc: { parser: { syntax: 'typescript' }, target: 'es2022' },
    module: { type: 'commonjs' },
    sourceMaps: 'inline',
  },
];

/** @type {import('jest').Config} */
export default {
  testEnvironment: 'node',
  transform: { '^.+\\.ts$': swc },
  moduleNameMapper: {
    '^rfc6455$': '<rootDir>/packages/rfc6455/src/index.ts',
    '^rfc6455/codec$': '<rootDir>/packages/rfc6455/src/codec/index.ts',
    '^@rfc6455/(fastify|express|koa)$': '<rootDir>/adapters/$1/src/index.ts',
    '^(\\.{1,2}/.*)\\.js$': '$1',
  },
  testMatch: ['<rootDir>/{packages,adapters}/*/test/**/*.test.ts', '<rootDir>/test/**/*.test.ts'],
  testPathIgnorePatterns: ['/node_modules/', '/dist/'],
  testTimeout: 30000,
  maxWorkers: 2,
};
