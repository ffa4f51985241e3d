/**
 * Child of process-exits.test.ts: a connect({ http2: true }) to a server that never answers, given
 * up at handshakeTimeout (`timeout`) or through its signal (`abort`). Prints the error's code, then
 * does nothing: the process must exit by itself, nothing of the failed handshake keeping it alive.
 */
import { connect } from 'rfc6455';

const [url, mode] = process.argv.slice(2) as [string, string];
const controller = new AbortController();
if (mode === 'abort') setTimeout(() => controller.abort(), 100);
try {
  await connect(url, { http2: true, handshakeTimeout: mode === 'abort' ? 60_000 : 200, signal: controller.signal, tls: { rejectUnauthorized: false } });
  console.log('opened');
} catch (error) {
  console.log(`failed ${(error as { code?: string }).code}`);
}
