/**
 * ws's internal permessage-deflate pieces, loaded by path (ws's `exports` hides lib/), used as a
 * differential reference.
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const load = createRequire(__filename);
const wsRoot = dirname(load.resolve('ws/package.json'));

export type WsParams = Record<string, Array<string | true>>;

export interface WsPerMessageDeflate {
  params: Record<string, string | number | true> | null;
  offer(): Record<string, string | number | true>;
  accept(configurations: WsParams[]): Record<string, string | number | true>;
  compress(data: Buffer, fin: boolean, cb: (err: Error | null, result?: Buffer) => void): void;
  decompress(data: Buffer, fin: boolean, cb: (err: Error | null, result?: Buffer) => void): void;
  cleanup(): void;
}

export const wsExtension = load(join(wsRoot, 'lib', 'extension.js')) as {
  parse(header: string): Record<string, WsParams[]>;
  format(extensions: Record<string, unknown>): string;
};

export const WsPerMessageDeflateClass = load(join(wsRoot, 'lib', 'permessage-deflate.js')) as new (options?: {
  isServer?: boolean;
  maxPayload?: number;
  serverNoContextTakeover?: boolean;
  clientNoContextTakeover?: boolean;
  serverMaxWindowBits?: number | boolean;
  clientMaxWindowBits?: number | boolean;
  threshold?: number;
}) => WsPerMessageDeflate;
