/** The sans-I/O codec: frames, masking, UTF-8, close payloads. `import … from 'rfc6455/codec'`. */
export { GUID, Opcode, CloseCode, Defaults, MAX_CONTROL_PAYLOAD, MAX_CLOSE_REASON_BYTES, isControlOpcode, isValidCloseCode } from './constants.js';
export { FrameParser, GATHER_MAX, GATHER_RATIO, type FrameParserOptions, type FrameSink } from './frame-parser.js';
export { encodeFrame, writeHeader, headerSize, COPY_THRESHOLD, type FrameOptions } from './frame-writer.js';
export { mask, unmaskInPlace, randomMaskKey } from './mask.js';
export { Utf8Validator, isValidUtf8 } from './utf8.js';
export { parseClosePayload, encodeClosePayload, type ClosePayload } from './close.js';
export { WebSocketError, ProtocolError, InvalidUtf8Error, MessageTooBigError } from '../errors.js';
export { Hybi00Parser, encodeHybi00Text, HYBI00_CLOSE, type Hybi00ParserHandlers, type Hybi00ParserOptions } from './hybi00.js';
