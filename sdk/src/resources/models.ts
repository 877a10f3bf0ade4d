import type { Model, ModelList } from "../protocol/models.js";
import type { ClientContext } from "../internal/context.js";
import type { RequestOptions } from "../internal/transport.js";

export class Models {
  constructor(private readonly client: ClientContext) {}

  /** The models the edge serves. */
  async list(options?: RequestOptions): Promise<ModelList> {
    const list = await this.client.transport.json<unknown>({ method: "GET", path: "/models" }, options);
    return this.client.validate ? this.client.validate.modelList(list) : (list as ModelList);
  }

  async retrieve(id: string, options?: RequestOptions): Promise<Model> {
    const model = await this.client.transport.json<unknown>(
      { method: "GET", path: `/models/${encodeURIComponent(id)}` },
      options,
    );
    return this.client.validate ? this.client.validate.model(model) : (model as Model);
  }
}
