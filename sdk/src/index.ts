export * from "./protocol/index.js";
export { Seventy, BINDING_ORIGIN, type ClientOptions, type ServiceBinding } from "./client.js";
export {
  SeventyError,
  APIError,
  BadRequestError,
  AuthenticationError,
  PermissionDeniedError,
  NotFoundError,
  ConflictError,
  UnprocessableEntityError,
  RateLimitError,
  InternalServerError,
  APIConnectionError,
  APITimeoutError,
  APIUserAbortError,
  ResponseValidationError,
  type APIErrorObject,
  type RateLimitInfo,
  type TimeoutPhase,
} from "./core/errors.js";
export { CompletionStreamBase, type StreamEvents } from "./core/stream.js";
export { SSEDecoder, type SSEHandler } from "./core/sse.js";
export type { Fetch, RequestOptions } from "./internal/transport.js";
export { ChatCompletionStream } from "./lib/chat-stream.js";
export { CompletionStream } from "./lib/completion-stream.js";
export { protocolValidator, type ResponseValidator } from "./lib/validate.js";
export { tool, type ToolDefinition, type RunToolsParams, type RunToolsOptions, type RunToolsResult } from "./lib/run-tools.js";
export type { ParseParams, ParsedChatCompletion } from "./lib/parse.js";
export type { StandardSchemaV1, InferOutput } from "./lib/standard-schema.js";
export {
  Chat,
  ChatCompletions,
  type ChatCompletionCreateParamsStreaming,
  type ChatCompletionCreateParamsNonStreaming,
} from "./resources/chat.js";
export {
  Completions,
  type CompletionCreateParamsStreaming,
  type CompletionCreateParamsNonStreaming,
} from "./resources/completions.js";
export { Models } from "./resources/models.js";
export {
  Responses,
  InputItems,
  type ResponseCreateParamsStreaming,
  type ResponseCreateParamsNonStreaming,
} from "./resources/responses.js";
export { ResponseStream, type ResponseStreamListeners, type ResponseWithText } from "./lib/response-stream.js";
export { SeventyAdmin, AdminKeys, AdminNodes, AdminUsage, type AdminClientOptions } from "./admin/client.js";
