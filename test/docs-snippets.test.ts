/**
 * Every ```ts block of the documentation a user meets (README.md, docs/**\/*.md, the package READMEs)
 * is type-checked against the real package types, as a user who copies it would: each block is its
 * own ES module (top-level await allowed), `rfc6455` and `@rfc6455/*` resolve to this tree's sources,
 * and the frameworks and @types come from node_modules. One ts.Program holds every block.
 *
 * A block that deliberately uses placeholders (a `handler`, a `userFromToken` it does not define)
 * gets honest declarations from HTML comments right above its fence:
 *   <!-- snippet-prelude: declare const handler: import('rfc6455').Handler; -->
 * A block that is deliberately not valid on its own may be skipped, with a reason:
 *   <!-- snippet: skip (why) -->
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import ts from 'typescript';

const root = resolve(__dirname, '..');

interface Snippet {
  /** Markdown file, relative to the repository root. */
  file: string;
  /** 1-based line of the block's first code line in the markdown file. */
  line: number;
  code: string;
  prelude: string[];
  skip?: string;
  /** Virtual path of the module the block becomes. */
  path: string;
}

function markdownFiles(): string[] {
  const out = [join(root, 'README.md')];
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const full = join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.name.endsWith('.md')) out.push(full);
    }
  };
  walk(join(root, 'docs'));
  for (const parent of ['packages', 'adapters']) {
    for (const pkg of readdirSync(join(root, parent))) {
      const readme = join(root, parent, pkg, 'README.md');
      try {
        readFileSync(readme);
        out.push(readme);
      } catch {
        // no README in this package
      }
    }
  }
  return out;
}

function extract(path: string): Snippet[] {
  const file = relative(root, path);
  const lines = readFileSync(path, 'utf8').split('\n');
  const out: Snippet[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)```(ts|typescript)\s*$/.exec(lines[i]!);
    if (!open) continue;
    const indent = open[1]!;
    const prelude: string[] = [];
    let skip: string | undefined;
    for (let j = i - 1; j >= 0; j--) {
      const marker = /^\s*<!--\s*snippet(-prelude)?:\s*([\s\S]*?)\s*-->\s*$/.exec(lines[j]!);
      if (!marker) break;
      if (marker[1]) prelude.unshift(marker[2]!);
      else {
        const reason = /^skip\s*\((.+)\)$/.exec(marker[2]!);
        if (!reason) throw new Error(`${file}:${j + 1}: unknown snippet marker "${marker[2]}"`);
        skip = reason[1];
      }
    }
    const code: string[] = [];
    let k = i + 1;
    for (; k < lines.length && !/^\s*```\s*$/.test(lines[k]!); k++) code.push(lines[k]!.startsWith(indent) ? lines[k]!.slice(indent.length) : lines[k]!);
    if (k === lines.length) throw new Error(`${file}:${i + 1}: unterminated code block`);
    const path = join(root, '.docs-snippets', `${file.replace(/[^\w]/g, '_')}_L${i + 2}.ts`);
    out.push({ file, line: i + 2, code: code.join('\n'), prelude, skip, path });
    i = k;
  }
  return out;
}

const snippets = markdownFiles().flatMap(extract);
const checked = snippets.filter((s) => s.skip === undefined);

const options: ts.CompilerOptions = {
  target: ts.ScriptTarget.ES2022,
  lib: ['lib.es2022.d.ts'],
  module: ts.ModuleKind.ESNext,
  moduleResolution: ts.ModuleResolutionKind.Bundler,
  moduleDetection: ts.ModuleDetectionKind.Force,
  strict: true,
  noUncheckedIndexedAccess: true,
  esModuleInterop: true,
  skipLibCheck: true,
  noEmit: true,
  types: ['node', 'jest'],
  typeRoots: [join(root, 'node_modules/@types')],
  baseUrl: root,
  paths: {
    rfc6455: ['packages/rfc6455/src/index.ts'],
    'rfc6455/codec': ['packages/rfc6455/src/codec/index.ts'],
    '@rfc6455/fastify': ['adapters/fastify/src/index.ts'],
    '@rfc6455/express': ['adapters/express/src/index.ts'],
    '@rfc6455/koa': ['adapters/koa/src/index.ts'],
  },
};

/** The module text: prelude lines first, then the block. */
const text = (s: Snippet): string => [...s.prelude, s.code].join('\n');

let program: ts.Program;

beforeAll(() => {
  const virtual = new Map(checked.map((s) => [s.path, text(s)]));
  const host = ts.createCompilerHost(options);
  const { getSourceFile, fileExists, readFile } = host;
  host.getSourceFile = (name, version, onError, create) => {
    const source = virtual.get(name);
    return source !== undefined ? ts.createSourceFile(name, source, version) : getSourceFile.call(host, name, version, onError, create);
  };
  host.fileExists = (name) => virtual.has(name) || fileExists.call(host, name);
  host.readFile = (name) => virtual.get(name) ?? readFile.call(host, name);
  program = ts.createProgram([...virtual.keys()], options, host);
}, 60_000);

test('the documentation has ts blocks, and skips are rare and give a reason', () => {
  expect(snippets.length).toBeGreaterThan(30);
  expect(snippets.filter((s) => s.skip !== undefined).length).toBeLessThanOrEqual(2);
});

test.each(checked.map((s) => [`${s.file}:${s.line}`, s] as const))('%s type-checks', (_where, snippet) => {
  const source = program.getSourceFile(snippet.path)!;
  const diagnostics = [...program.getSyntacticDiagnostics(source), ...program.getSemanticDiagnostics(source)];
  const offset = snippet.prelude.length; // one line per prelude marker
  const messages = diagnostics.map((d) => {
    const message = ts.flattenDiagnosticMessageText(d.messageText, '\n');
    if (d.file === undefined || d.start === undefined) return message;
    const { line } = d.file.getLineAndCharacterOfPosition(d.start);
    const where = line < offset ? `${snippet.file}:${snippet.line - 1} (prelude)` : `${snippet.file}:${snippet.line + line - offset}`;
    return `${where}: ${message}`;
  });
  expect(messages).toEqual([]);
});
