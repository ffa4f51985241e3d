/**
 * What the Fastify, Express and Koa examples serve, shared so the three stay identical:
 *
 * - `/test`: Racket's test-service-mapper. Subprotocol `subprotocol` → "This is the subprotocol
 *   handler" (the connection stays open, as in Racket); no subprotocol → the test-server loop
 *   (lib/test-loop.ts): "Waited another second" every second, `You said: "…"` for each message,
 *   "Goodbye!" and a close with 1000 on "goodbye". Other subprotocols get 400.
 * - `/private`: echoes every message. Each example guards it with its framework's own auth
 *   middleware/hook (see `authorize`): only `Authorization: Bearer letmein` gets through, anything
 *   else is answered 401 with `WWW-Authenticate: Bearer`.
 * - `/`: an HTML page (`indexPage`) that talks to /test from the browser.
 */
import { serviceMapper, type ServiceMapper } from 'rfc6455';
import { testServiceMapper } from '../lib/routes.js';
import { portOption } from '../lib/stdin.js';

export const PRIVATE_PATH = '/private';
export const TOKEN = 'letmein';

/** The auth rule of /private: undefined when allowed, else the 401 to answer. */
export function authorize(authorization: string | undefined): { status: 401; headers: Record<string, string>; body: string } | undefined {
  if (authorization === `Bearer ${TOKEN}`) return undefined;
  return { status: 401, headers: { 'WWW-Authenticate': 'Bearer' }, body: 'Unauthorized: send Authorization: Bearer <token>\n' };
}

/** The example service mapper (the same for the three frameworks). */
export function exampleMapper(log: (line: string) => void = () => {}): ServiceMapper<unknown> {
  return serviceMapper<unknown>([
    ...testServiceMapper(log).routes,
    {
      path: PRIVATE_PATH,
      handler: async (conn) => {
        for await (const message of conn) await conn.send(message).catch(() => undefined);
      },
    },
  ]);
}

/** The page served at `/`. */
export function indexPage(framework: string): string {
  return `<!doctype html>
<html>
<head><meta charset="utf-8"><title>rfc6455 + ${framework}</title></head>
<body>
<h1>rfc6455 + ${framework}</h1>
<p>WebSocket services: <code>/test</code> (Racket's test-service-mapper) and <code>/private</code>
(echo, needs <code>Authorization: Bearer ${TOKEN}</code>). Open the console to watch /test.</p>
<pre id="log"></pre>
<script>
  const log = (line) => { document.getElementById('log').textContent += line + '\\n'; console.log(line); };
  const ws = new WebSocket(location.origin.replace(/^http/, 'ws') + '/test');
  let count = 0;
  ws.onopen = () => { log('open'); ws.send('Hi there'); };
  ws.onmessage = (e) => { log(e.data); if (++count === 10) ws.send('goodbye'); };
  ws.onclose = (e) => log('closed ' + e.code);
</script>
</body>
</html>
`;
}

/** `--port` and `--host` for the examples (port 0 picks a free port; the real one is printed). */
export function listenOptions(values: { port?: string | undefined; host?: string | undefined }): { port: number; host: string } {
  return { port: portOption(values.port, 8081), host: values.host ?? '127.0.0.1' };
}
