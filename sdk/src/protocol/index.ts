export * from "./common.js";
export * from "./errors.js";
export * from "./chat.js";
export * from "./completions.js";
export * from "./models.js";
export * from "./node.js";
export * from "./signing.js";
export type * from "./admin.js";
export * from "./responses.js";
