/**
 * The second browser of the browser tests: Debian's Firefox ESR (/usr/bin/firefox-esr), headless,
 * driven by puppeteer-core over WebDriver BiDi. Its WebSocket code (Necko) is independent of
 * Chromium's. Never downloaded: a machine without it fails with how to install it.
 */
import { existsSync } from 'node:fs';
import puppeteer, { type Browser } from 'puppeteer-core';

export const FIREFOX = '/usr/bin/firefox-esr';

/**
 * Launches Firefox headless with a throwaway profile. `acceptInsecureCerts` lets pages load from
 * the self-signed test certificate (and their wss: WebSockets connect to it); `prefs` are extra
 * about:config preferences.
 */
export async function launchFirefox(options: { acceptInsecureCerts?: boolean; prefs?: Record<string, unknown> } = {}): Promise<Browser> {
  if (!existsSync(FIREFOX)) {
    throw new Error(`${FIREFOX} is missing: install Debian's firefox-esr (apt-get install -y firefox-esr); the browser tests never download a browser`);
  }
  return puppeteer.launch({
    browser: 'firefox',
    executablePath: FIREFOX,
    headless: true,
    acceptInsecureCerts: options.acceptInsecureCerts ?? false,
    extraPrefsFirefox: options.prefs ?? {},
  });
}
