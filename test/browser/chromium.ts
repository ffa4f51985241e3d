/**
 * The browser of the browser tests: Debian's Chromium (/usr/bin/chromium), headless, driven by
 * playwright-core. Never downloaded: a machine without it fails with how to install it.
 */
import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';

const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

/** Launches Chromium with the usual flags and `extraArgs` (e.g. `--ignore-certificate-errors`). */
export async function launchChromium(extraArgs: string[] = []): Promise<Browser> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium); the browser tests never download a browser`);
  }
  return chromium.launch({ executablePath: CHROMIUM, args: [...ARGS, ...extraArgs] });
}

/**
 * Runs a scenario script (the source of one async function) in a fresh page of `browser`, called
 * with the page's globals named in `globals`, then `values` (as JSON); returns what it returns.
 */
export async function runInPage(browser: Browser, script: string, globals: string[], values: unknown[]): Promise<unknown[]> {
  const page = await browser.newPage();
  try {
    const args = [...globals, ...values.map((value) => JSON.stringify(value))].join(', ');
    return (await page.evaluate(`(${script})(${args})`)) as unknown[];
  } finally {
    await page.close();
  }
}

/** The same script in Node, called with `args` (ours in place of the page's globals). */
export function runInNode(script: string, args: unknown[]): Promise<unknown[]> {
  // eslint-disable-next-line @typescript-eslint/no-implied-eval
  const scenarios = new Function(`return (${script})`)() as (...args: unknown[]) => Promise<unknown[]>;
  return scenarios(...args);
}
