/**
 * Child of nothing-lost.test.ts: connects, awaits a few sends (the last one large), then exits at
 * once. `await conn.send()` resolves once the frame was handed to the socket, so nothing is lost.
 */
import { connect } from 'rfc6455';

const conn = await connect(process.argv[2]!);
for (let i = 0; i < 3; i++) await conn.send(`message ${i}`);
await conn.send('x'.repeat(5000) + 'last words');
process.exit(0);
