/**
 * The draft hybi-00 (hixie-76) protocol behind the same engine interface as RFC 6455's, so a
 * handler never needs to know which variant its peer speaks. Text only: no binary, no
 * fragmentation, no ping, and close frames carry no status (reported locally as 1005).
 */
import { CloseCode } from './codec/constants.js';
import { encodeHybi00Text, HYBI00_CLOSE, Hybi00Parser, type Hybi00ParseError } from './codec/hybi00.js';
import { ConnectionClosedError, UnsupportedError } from './errors.js';
import type { PreparedMessage } from './prepared.js';
import type { ProtocolEngine, ProtocolHandler, ProtocolState, Side } from './protocol.js';

/** The hybi-00 (hixie-76) engine behind the {@link ProtocolEngine} interface, sans I/O. Text only. */
export class Hybi00Protocol implements ProtocolEngine {
  /** Not supported by hybi-00: messages always arrive whole. */
  streamNextMessage = false;
  private readonly side: Side;
  private readonly handler: ProtocolHandler;
  private readonly parser: Hybi00Parser;
  private stateValue: ProtocolState = 'open';
  private closeSentFlag = false;
  private closeCodeValue: number | undefined;
  private closeReasonValue = '';

  /** `textAsBuffer`: text frames are handed over as their checked UTF-8 bytes (`textMessages: 'buffer'`). */
  constructor(options: { side: Side; maxMessageSize?: number | undefined; textAsBuffer?: boolean | undefined }, handler: ProtocolHandler) {
    this.side = options.side;
    this.handler = handler;
    this.parser = new Hybi00Parser(
      {
        onMessage: (text) => {
          if (this.stateValue !== 'closed') handler.onMessage(text, false);
        },
        ...(options.textAsBuffer === true
          ? {
              onText: (bytes: Buffer) => {
                if (this.stateValue !== 'closed') handler.onMessage(bytes, false);
              },
            }
          : {}),
        onClose: () => this.receiveClose(),
        onError: (error) => this.fail(error),
      },
      { maxMessageSize: options.maxMessageSize },
    );
  }

  /** Always false: a hybi-00 connection keeps its engine (the draft is rare; not worth a second path). */
  get atRest(): boolean {
    return false;
  }
  /** `open`, `closing` (our closing frame was sent) or `closed`. */
  get state(): ProtocolState {
    return this.stateValue;
  }
  /** True once our closing frame was written. */
  get closeSent(): boolean {
    return this.closeSentFlag;
  }
  /** 1005 after a closing frame (hybi-00 has no status), the failure's code, or 1006; undefined before. */
  get closeCode(): number | undefined {
    return this.closeCodeValue;
  }
  /** The failure's message, else ''. */
  get closeReason(): string {
    return this.closeReasonValue;
  }

  /** Feeds bytes read from the transport. */
  receiveData(chunk: Buffer): void {
    this.parser.push(chunk);
  }

  /** The transport ended or broke; without a closing frame received the close code becomes 1006. */
  receiveEof(): void {
    if (this.stateValue === 'closed') return;
    this.stateValue = 'closed';
    this.closeCodeValue ??= CloseCode.Abnormal;
  }

  private receiveClose(): void {
    if (this.stateValue === 'closed') return;
    // draft-76 §4.2/§5.3: answer the closing frame with one, then close.
    if (!this.closeSentFlag) this.writeClose();
    this.stateValue = 'closed';
    this.closeCodeValue = CloseCode.NoStatus;
    this.handler.onCloseFrame(CloseCode.NoStatus, '');
    if (this.side === 'server') this.handler.onEnd();
  }

  private fail(error: Hybi00ParseError): void {
    if (this.stateValue === 'closed') return;
    if (!this.closeSentFlag) this.writeClose();
    this.stateValue = 'closed';
    this.closeCodeValue = error.closeCode;
    this.closeReasonValue = error.message;
    // The transport ends even when an `error` listener throws (see Protocol.fail).
    try {
      this.handler.onFail(error);
    } finally {
      this.handler.onEnd();
    }
  }

  private writeClose(): void {
    this.closeSentFlag = true;
    this.handler.onWrite(HYBI00_CLOSE);
  }

  private assertOpen(): void {
    if (this.closeSentFlag || this.stateValue !== 'open') {
      throw new ConnectionClosedError(this.closeCodeValue ?? CloseCode.Abnormal, this.closeReasonValue);
    }
  }

  /** Writes a text frame; always synchronous (returns true). */
  sendText(text: string | Buffer): boolean {
    this.assertOpen();
    this.handler.onWrite(encodeHybi00Text(text));
    return true;
  }

  /** Throws UnsupportedError `WS_HYBI00_TEXT_ONLY`: hybi-00 carries text only. */
  sendBinary(): boolean {
    throw new UnsupportedError('hybi-00 connections carry text only', 'WS_HYBI00_TEXT_ONLY');
  }

  /** Sends a prepared text message (its string, or its bytes); a binary one throws as `sendBinary` does. */
  sendPrepared(message: PreparedMessage): boolean {
    if (message.binary) return this.sendBinary();
    return this.sendText(message.text ?? message.data);
  }

  /** Throws UnsupportedError `WS_HYBI00_NO_FRAGMENTS`. */
  sendFragment(): boolean {
    throw new UnsupportedError('hybi-00 cannot fragment messages', 'WS_HYBI00_NO_FRAGMENTS');
  }

  /** Throws UnsupportedError `WS_HYBI00_NO_PING`. */
  ping(): void {
    throw new UnsupportedError('hybi-00 has no ping', 'WS_HYBI00_NO_PING');
  }

  /** Does nothing: hybi-00 has no control frames. */
  pong(): void {
    // hybi-00 has no control frames: nothing to answer.
  }

  /** Sends the closing frame; status and reason do not exist in hybi-00 and are ignored. */
  close(): boolean {
    if (this.closeSentFlag || this.stateValue === 'closed') return false;
    this.writeClose();
    this.stateValue = 'closing';
    return true;
  }
}
