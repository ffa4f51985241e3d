/**
 * `server.url` for the address listened on: IPv4, IPv6 in brackets, and an IPv6 zone (a link-local
 * address, `fe80::1%eth0`) written `%25` as RFC 6874 writes it, so that the URL is one a URI
 * parser takes. (Tested on the formatting function: a machine need not have a link-local address.)
 */
import { networkInterfaces } from 'node:os';
import { serve } from 'rfc6455';
import { listeningUrl } from '../../src/server.js';

// A link-local address of this machine with its zone (`fe80::…%eth0`), if it has one.
const linkLocal = Object.entries(networkInterfaces())
  .flatMap(([name, addresses]) => (addresses ?? []).map((a) => ({ ...a, name })))
  .find((a) => a.family === 'IPv6' && a.address.startsWith('fe80:') && !a.internal);

describe('server.url', () => {
  test('an IPv6 zone is written %25 (RFC 6874), percent-encoded; it was a bare % that began no escape', () => {
    expect(listeningUrl('ws', { address: 'fe80::fc:ff:fe00:1%eth0', family: 'IPv6', port: 8080 })).toBe('ws://[fe80::fc:ff:fe00:1%25eth0]:8080/');
    expect(listeningUrl('wss', { address: 'fe80::1%4', family: 'IPv6', port: 443 })).toBe('wss://[fe80::1%254]:443/');
    // A zone with characters a URI may not carry (Windows names its interfaces freely).
    expect(listeningUrl('ws', { address: 'fe80::1%en 0/ä', family: 'IPv6', port: 1 })).toBe('ws://[fe80::1%25en%200%2F%C3%A4]:1/');
    // Every '%' of the URL now begins an escape (RFC 3986 pct-encoded).
    for (const zone of ['eth0', '4', 'en 0/ä']) {
      const url = listeningUrl('ws', { address: `fe80::1%${zone}`, family: 'IPv6', port: 1 });
      expect([zone, /%(?![0-9A-F]{2})/.test(url)]).toEqual([zone, false]);
      expect(decodeURIComponent(/\[(.*)\]/.exec(url)![1]!)).toBe(`fe80::1%${zone}`);
    }
  });

  test('IPv4 as it is, IPv6 without a zone in brackets (new URL() takes both)', async () => {
    expect(listeningUrl('ws', { address: '127.0.0.1', family: 'IPv4', port: 80 })).toBe('ws://127.0.0.1:80/');
    expect(listeningUrl('ws', { address: '::1', family: 'IPv6', port: 80 })).toBe('ws://[::1]:80/');
    const server = await serve({ host: '::1' }, () => undefined);
    try {
      expect(server.url).toBe(`ws://[::1]:${server.port}/`);
      expect(new URL(server.url).hostname).toBe('[::1]');
    } finally {
      await server.close();
    }
  });

  // Only where the machine has a link-local address (the test above covers the formatting anywhere).
  (linkLocal ? test : test.skip)('serve() on a link-local address: server.url carries the zone as %25', async () => {
    const server = await serve({ host: `${linkLocal!.address}%${linkLocal!.name}` }, () => undefined);
    try {
      expect(server.url).toBe(`ws://[${linkLocal!.address}%25${encodeURIComponent(linkLocal!.name)}]:${server.port}/`);
    } finally {
      await server.close();
    }
  });
});
