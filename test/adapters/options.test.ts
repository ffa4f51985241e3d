/**
 * The adapters check the core's limits and timeouts when they are set up: an option out of range
 * fails `websocket()` (Express, Koa) or the plugin's registration (Fastify), instead of every
 * upgrade later (a NaN limit used to turn the limit off, a bad maxMessageSize failed each handshake
 * with 500).
 */
import Fastify from 'fastify';
import { websocket as expressWebSocket } from '@rfc6455/express';
import { wsPlugin } from '@rfc6455/fastify';
import { websocket as koaWebSocket } from '@rfc6455/koa';

describe('adapter options out of range', () => {
  test('Express: websocket({ maxFrameSize: NaN }) throws a RangeError; a string limit a TypeError', () => {
    expect(() => expressWebSocket({ maxFrameSize: NaN })).toThrow(RangeError);
    expect(() => expressWebSocket({ maxBufferedAmount: '1' as unknown as number })).toThrow(TypeError);
    expect(() => expressWebSocket({ handshakeTimeout: Infinity, idleTimeout: 0 })).not.toThrow();
  });

  test('Koa: websocket({ perMessageDeflate: { serverMaxWindowBits: 16 } }) throws a RangeError', () => {
    expect(() => koaWebSocket({ perMessageDeflate: { serverMaxWindowBits: 16 } })).toThrow(RangeError);
    expect(() => koaWebSocket({ maxMessageSize: 0 })).toThrow(/maxMessageSize/);
    expect(() => koaWebSocket({ maxMessageSize: Infinity })).not.toThrow();
  });

  test('Fastify: registering with readHighWaterMark: NaN fails app.ready() with a RangeError', async () => {
    const app = Fastify();
    await app.register(wsPlugin, { readHighWaterMark: NaN }).ready().then(
      () => {
        throw new Error('registered');
      },
      (error: unknown) => expect(error).toBeInstanceOf(RangeError),
    );
    await app.close();
  });
});
