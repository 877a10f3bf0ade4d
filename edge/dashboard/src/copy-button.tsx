import { useState } from "hono/jsx/dom";

/** Copies `text` to the clipboard; says so for a moment. */
export function CopyButton({ text, label = "Copy" }: { text: string; label?: string }) {
  const [done, setDone] = useState<"" | "Copied" | "Copy failed">("");
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(text);
      setDone("Copied");
    } catch {
      setDone("Copy failed");
    }
    setTimeout(() => setDone(""), 1500);
  };
  return (
    <button type="button" class="secondary" onClick={copy} aria-live="polite">
      {done || label}
    </button>
  );
}
