/**
 * The routes of Racket's test-service-mapper.rkt: one path, `/test`.
 * - subprotocol `subprotocol`: sends "This is the subprotocol handler" and returns without
 *   closing (as the Racket example does; the idle timeout or the client ends the connection);
 * - no subprotocol: the test-server loop (lib/test-loop.ts).
 * Other paths get 404 and other subprotocols 400 from the service mapper.
 */
import { serviceMapper, type ServiceMapper } from 'rfc6455';
import { testLoop } from './test-loop.js';

export function testServiceMapper(log: (line: string) => void = () => {}): ServiceMapper {
  return serviceMapper([
    {
      path: '/test',
      protocols: {
        subprotocol: async (conn) => {
          log(`${conn.url}: subprotocol handler`);
          await conn.send('This is the subprotocol handler');
        },
      },
      handler: (conn) => {
        log(`${conn.url}: connected`);
        return testLoop(conn, (line) => log(`${conn.url}: ${line}`));
      },
    },
  ]);
}
