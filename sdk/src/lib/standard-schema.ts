/**
 * The parts of Standard Schema (https://standardschema.dev) the SDK uses: `validate`, and the
 * JSON Schema export of Standard JSON Schema. Zod 4.2+, Valibot and ArkType schemas fit it, so
 * the SDK never imports a schema library at run time.
 */
export interface StandardSchemaV1<Input = unknown, Output = Input> {
  readonly "~standard": {
    readonly version: 1;
    readonly vendor: string;
    readonly validate: (value: unknown) => StandardResult<Output> | Promise<StandardResult<Output>>;
    readonly types?: { readonly input: Input; readonly output: Output } | undefined;
    readonly jsonSchema?: StandardJSONSchemaConverter | undefined;
  };
}

export interface StandardJSONSchemaConverter {
  input(options: { readonly target: "draft-07" | "draft-2020-12" | "openapi-3.0" }): Record<string, unknown>;
  output(options: { readonly target: "draft-07" | "draft-2020-12" | "openapi-3.0" }): Record<string, unknown>;
}

export type StandardResult<Output> =
  | { readonly value: Output; readonly issues?: undefined }
  | { readonly issues: ReadonlyArray<StandardIssue> };

export interface StandardIssue {
  readonly message: string;
  readonly path?: ReadonlyArray<PropertyKey | { readonly key: PropertyKey }> | undefined;
}

export type InferOutput<S extends StandardSchemaV1> = NonNullable<S["~standard"]["types"]>["output"];

/** The schema's JSON Schema (draft-07), or a TypeError naming what is missing. */
export function toJSONSchema(schema: StandardSchemaV1, what: string): Record<string, unknown> {
  const converter = schema["~standard"].jsonSchema;
  if (!converter) {
    throw new TypeError(
      `${what} must be a schema that exports JSON Schema (Standard JSON Schema: zod 4.2 or newer, or a library with "~standard.jsonSchema").`,
    );
  }
  // The output view closes objects (`additionalProperties: false`), which strict decoding wants;
  // a schema with transforms has no output JSON Schema, and its input view is what the model writes.
  let json: Record<string, unknown>;
  try {
    json = { ...converter.output({ target: "draft-07" }) };
  } catch {
    json = { ...converter.input({ target: "draft-07" }) };
  }
  delete json.$schema;
  return json;
}

export function issuePath(issue: StandardIssue): PropertyKey[] {
  return (issue.path ?? []).map((p) => (typeof p === "object" ? p.key : p));
}
