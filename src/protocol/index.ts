/**
 * Everything that crosses the gateway↔sandbox-host pipe: framing (bytes ↔ frames), the message
 * vocabulary (typed for the gateway's messages, zod-validated for the host's), and the limits
 * both sides derive their checks from. Imported by src/pool (gateway side) and
 * src/runtime/host (host side); imports nothing of either.
 */
export { encodeFrame, encodeFrameChunks, FrameDecoder, FrameTooLargeError, type Frame } from "./framing.js";
export { PROTOCOL_LIMITS, maxHostFrameBytes } from "./limits.js";
export { parseHostMessage, SPARE_PRELOADED_LINE, type GatewayMessage, type HostMessage, type InitMessage, type RequestMessage, type ExitMessage, type ResponseMessage, type MemoryQueryMessage, type HostMemoryReport } from "./messages.js";
