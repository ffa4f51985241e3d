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

const ESM_ONLY = '(proxy|https-proxy-agent|agent-base|proxy-agent-negotiate)';

/** @type {import('jest').Config} */
export default {
  testEnvironment: 'node',
  // The ESM-only proxy packages the proxy tests run for real (test/client/proxy-agent.socket.test.ts)
  // are compiled to CommonJS like our sources; every other package in node_modules is left alone.
  transform: { '^.+\\.ts$': swc, [`/node_modules/${ESM_ONLY}/.+\\.js$`]: swc },
  transformIgnorePatterns: [`/node_modules/(?!${ESM_ONLY}/)`],
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
