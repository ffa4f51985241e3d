/**
 * A peer library driven as a child process (a Python, Java or Perl script): commands go to its
 * stdin, events come back on its stdout as JSON lines (`listening` {port}, `open` {id, …}, then
 * per connection `message`, `ping`, `pong`, `error`, `closed`). What every such script shares is
 * here: the process, the connections it reports by id, the accepted ones (server role), the ones
 * it was asked to open (client role) and their failures. How commands are written and how an
 * event's payload is encoded differ per script: each test file's subclasses say.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { Inbox } from './peer-helpers.js';
import type { PeerClose, PeerMessage } from './peer-suite.js';

/** One event line of a peer script. */
export type ScriptEvent = { ev: string; id?: number; [k: string]: unknown };

/** The script's end of one connection: what it received and reported. */
export abstract class ScriptEnd<Opened extends { protocol: string | null }> {
  readonly messages = new Inbox<PeerMessage>();
  readonly pings = new Inbox<string>();
  readonly pongs = new Inbox<string>();
  /** What it could not do, and why. */
  readonly errors = new Inbox<string>();
  /** What it reported once open (its `open` event). */
  opened!: Opened;
  private resolveClosed!: (c: PeerClose) => void;
  /** The close it reports. */
  readonly closed = new Promise<PeerClose>((resolve) => (this.resolveClosed = resolve));
  /** Messages received before its close was reported. */
  messagesBeforeClose = 0;
  private count = 0;

  constructor(readonly id: number) {}

  /** Handles one of its events other than `open`. */
  abstract event(e: ScriptEvent): void;

  /** It received a message. */
  protected received(message: PeerMessage): void {
    this.count++;
    this.messages.push(message);
  }

  /** It reported its connection closed. */
  protected reportClosed(close: PeerClose): void {
    this.messagesBeforeClose = this.count;
    this.resolveClosed(close);
  }

  nextPing(): Promise<string> {
    return this.pings.next();
  }

  protocol(): string | null {
    return this.opened.protocol;
  }
}

/** One running peer script, in one role. */
export abstract class ScriptProcess<End extends ScriptEnd<{ protocol: string | null }>> {
  readonly child: ChildProcessWithoutNullStreams;
  readonly ends = new Map<number, End>();
  /** Server role: each connection it accepts, once open. */
  readonly accepted = new Inbox<End>();
  /** Server role: the port it listens on. */
  readonly listening: Promise<number>;
  /** Rejects once the process is gone (a missing module, a crash), unless stopped. */
  protected readonly gone: Promise<never>;
  private readonly opens = new Map<number, (end: End) => void>();
  private stopping = false;
  private stderr = '';
  private nextId = 1000;

  /** `debug`: the environment variable that, set, echoes its events and stderr to ours. */
  constructor(
    readonly label: string,
    command: string,
    args: string[],
    private readonly debug: string,
  ) {
    this.child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stderr.on('data', (c: Buffer) => (this.stderr += c.toString()));
    let listened!: (port: number) => void;
    this.gone = new Promise<never>((_, reject) =>
      this.child.once('exit', (code, signal) => this.stopping || reject(new Error(`${label} exited (${code ?? signal}):\n${this.stderr}`))),
    );
    this.gone.catch(() => undefined);
    this.listening = Promise.race([new Promise<number>((resolve) => (listened = resolve)), this.gone]);
    this.listening.catch(() => undefined);
    createInterface({ input: this.child.stdout }).on('line', (text) => {
      if (process.env[debug]) process.stderr.write(`${label}: ${text.slice(0, 300)}\n`);
      const e = JSON.parse(text) as ScriptEvent;
      if (e.ev === 'listening') return listened(e.port as number);
      if (e.ev === 'ready') return;
      if (e.id === undefined || e.id === null) throw new Error(`${label}: ${text}\n${this.stderr}`);
      let end = this.ends.get(e.id);
      if (!end) this.ends.set(e.id, (end = this.newEnd(e.id)));
      if (e.ev === 'open') {
        end.opened = e as unknown as End['opened'];
        const waiting = this.opens.get(e.id);
        if (waiting) waiting(end);
        else this.accepted.push(end);
      } else end.event(e);
    });
  }

  /** Its end of the connection numbered `id`. */
  protected abstract newEnd(id: number): End;

  /** Its stderr so far (tracebacks), for a failing test's message. */
  get log(): string {
    return this.stderr;
  }

  /** Writes one command line. */
  protected write(line: string): void {
    this.child.stdin.write(`${line}\n`);
  }

  /**
   * Client role: a new connection, asked for by `send(id)`; resolves with its end once open, and
   * rejects with the first error `failure` gives for it, or when the process is gone.
   */
  protected opening(send: (id: number) => void, failure: (end: End) => Promise<string>): Promise<End> {
    const id = this.nextId++;
    const end = this.newEnd(id);
    this.ends.set(id, end);
    const open = new Promise<End>((resolve) => this.opens.set(id, resolve));
    send(id);
    return Promise.race([open, failure(end).then((e) => Promise.reject(new Error(`${this.label}: ${e}\n${this.stderr}`))), this.gone]);
  }

  async stop(): Promise<void> {
    if (process.env[this.debug]) process.stderr.write(`${this.label} stderr:\n${this.stderr}\n`);
    this.stopping = true; // an expected exit: nothing waiting on it fails
    this.child.stdin.end();
    this.child.kill('SIGKILL');
    if (this.child.exitCode === null && this.child.signalCode === null) await once(this.child, 'exit');
  }
}
