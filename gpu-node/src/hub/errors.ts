/**
 * A Hub or cache problem the user can fix: its message is one line that names the repo and says
 * what to do. The CLI prints it as is, never a stack trace.
 */
export class HubError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "HubError";
  }
}

/** Turns a Hub answer (401/403/404 from `@huggingface/hub`'s `HubApiError`) into a one-line `HubError`. */
export function hubAccessError(repo: string, revision: string, err: unknown, hasToken: boolean): Error {
  const status = (err as { statusCode?: number }).statusCode;
  if (status === 401) {
    return new HubError(
      hasToken
        ? `${repo}: the Hub refused HF_TOKEN (401): the token is invalid or expired, or the repo does not exist; create a read token at https://huggingface.co/settings/tokens and set HF_TOKEN`
        : `${repo}: the Hub needs a token for this repo (401): it is gated or private, or does not exist; accept its license at https://huggingface.co/${repo} and set HF_TOKEN to a read token`,
    );
  }
  if (status === 403) {
    return new HubError(
      `${repo}: access is restricted (403): accept the model's license at https://huggingface.co/${repo} with the account of your HF_TOKEN (approval can take a while), then retry`,
    );
  }
  if (status === 404) return new HubError(`${repo}: no such repo or revision '${revision}' on the Hub (404); check the spelling`);
  if (err instanceof TypeError && /access token must start with 'hf_'/.test(err.message)) {
    return new HubError(`${repo}: HF_TOKEN does not look like a Hugging Face token (it must start with 'hf_')`);
  }
  return err instanceof Error ? err : new Error(String(err));
}
