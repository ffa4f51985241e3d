/**
 * rfc6455: WebSockets for Node.js. Public API (re-exports only).
 */
export { serve, type ServeOptions, type WebSocketServer } from './server.js';
export { connect, type ConnectOptions } from './client.js';
export {
  WebSocket,
  CloseEvent,
  ErrorEvent,
  type MessageEvent,
  type BinaryType,
  type WebSocketEventHandler,
  type WebSocketEventMap,
  type WebSocketData,
  type WebSocketInit,
  type CloseEventInit,
  type ErrorEventInit,
} from './web-socket.js';
export {
  handleUpgrade,
  rejectUpgrade,
  upgradeResponse,
  completeUpgradeResponse,
  endRefusedResponse,
  isWebSocketUpgrade,
  ignoreUpgrade,
  afterEarlierResponses,
  listenForUpgrades,
  upgradesUnderWay,
  requestPath,
  type UpgradeOptions,
  type UpgradeInfo,
  type UpgradeRejection,
  type UpgradeTarget,
  type BeforeAcceptResult,
  type HookReturning,
  type HookState,
  type HookChecked,
  type AcceptsWithoutState,
  type ResponseHeaders,
  type ResponseHeaderSource,
  type UpgradesUnderWay,
} from './upgrade.js';
export {
  WebSocketConnection,
  EOF,
  type Message,
  type SendData,
  type RecvOptions,
  type SendOptions,
  type SendStreamOptions,
  type ConnectionOptions,
  type ConnectionInfo,
  type ConnectionEvents,
} from './connection.js';
export { createWebSocketStream, type WebSocketStreamOptions } from './web-socket-stream.js';
export { WebSocketStream, WebSocketStreamError, type WebSocketStreamInit, type WebSocketOpenInfo, type WebSocketCloseInfo } from './whatwg-stream.js';
export { broadcast, prepareMessage, PreparedMessage, type BroadcastOptions, type PrepareOptions } from './prepared.js';
export {
  serviceMapper,
  isServiceMapper,
  type ServiceMapper,
  type Route,
  type MatchResult,
  type ConnectionHandler,
  type HandlerContext,
} from './service-mapper.js';
export { socketTransport, type Transport } from './transport.js';
export { Protocol, type ProtocolHandler, type ProtocolOptions, type ProtocolState, type ProtocolEngine, type SendCallback, type Side } from './protocol.js';
export type { FrameSink } from './codec/frame-parser.js';
export type { WheelMember } from './idle-wheel.js';
export type { HeaderList } from './handshake/http.js';
export {
  WebSocketError,
  ProtocolError,
  InvalidUtf8Error,
  MessageTooBigError,
  HandshakeError,
  ConnectionClosedError,
  TimeoutError,
  UnsupportedError,
  BackpressureError,
} from './errors.js';
export { CloseCode, Opcode, Defaults, GUID, isValidCloseCode } from './codec/constants.js';
export { acceptKey, validateRequest, parseProtocols, type UpgradeRequest, type ValidatedRequest } from './handshake/server.js';
export { generateKey, buildRequestHeaders, verifyResponse, verifyNegotiation, type VerifiedResponse, type ClientRequestInit } from './handshake/client.js';
export type { PerMessageDeflateOptions } from './extensions/deflate-negotiation.js';
export { attachHttp2, connectDeadline, connectHttp2, handleConnect, http2StreamTransport, type Http2Attachment, type Http2ConnectOptions } from './http2.js';
export { negotiate, startConnection, type Negotiated, type NegotiationInput } from './upgrade.js';
export { handleHybi00Upgrade, connectHybi00 } from './hybi00-upgrade.js';
export { Hybi00Protocol } from './hybi00-protocol.js';
export { PerMessageDeflate, type PerMessageDeflateEngineOptions, type Callback as ExtensionCallback, acceptDeflateOffers, buildDeflateOffer, acceptDeflateResponse, setZlibConcurrency, type DeflateParams } from './extensions/permessage-deflate.js';
export { parseExtensions, formatExtension, type ExtensionOffer } from './extensions/header.js';
export type { InflatedSlice, MessageExtension } from './extensions/extension.js';
export { tuneAllocator, type AllocatorTuning } from './allocator.js';
export { checkClientHeaders, checkOwnConnections, checkUpgradeOptions } from './check-options.js';
