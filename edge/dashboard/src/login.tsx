import { useState } from "hono/jsx/dom";
import { checkAdminToken, errorText } from "./admin";

/** Asks for the admin token once per tab; checks it against the admin API before keeping it. */
export function Login({ onToken }: { onToken: (token: string) => void }) {
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    const input = (e.target as HTMLFormElement).elements.namedItem("token") as HTMLInputElement;
    const token = input.value.trim();
    if (!token) return;
    setBusy(true);
    setError("");
    try {
      if (await checkAdminToken(token)) onToken(token);
      else setError("That admin token was refused.");
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <main class="login">
      <h1>seventy</h1>
      <form onSubmit={submit} class="card">
        <label for="token">Admin token</label>
        <input id="token" name="token" type="password" autocomplete="off" required autofocus />
        <p class="muted small">Kept in this tab only (session storage) and sent as a bearer header.</p>
        <button type="submit" disabled={busy}>
          {busy ? "Checking…" : "Sign in"}
        </button>
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
      </form>
    </main>
  );
}
