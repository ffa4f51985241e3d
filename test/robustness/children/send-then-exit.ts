/**
 * Child of nothing-lost.test.ts: connects, sends a few messages (the last one large), then exits
 * at once. `await conn.send()` resolves once the frame was handed to the socket; without await
 * (`sync` mode) the sends are still flushed at exit. Either way nothing is lost.
 */
import { connect } from 'rfc6455';

const conn = await connect(process.argv[2]!);
if (process.argv[3] === 'sync') {
  for (let i = 0; i < 3; i++) void conn.send(`message ${i}`);
  void conn.send('x'.repeat(5000) + 'last words');
} else {
  for (let i = 0; i < 3; i++) await conn.send(`message ${i}`);
  await conn.send('x'.repeat(5000) + 'last words');
}
process.exit(0);
