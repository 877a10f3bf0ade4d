import { useEffect, useRef, useState } from "hono/jsx/dom";
import { errorText } from "./admin";

export interface Polled<T> {
  data: T | null;
  error: string | null;
  /** Epoch ms of the last successful load. */
  at: number;
  /** Loads again now (after a change the page made). */
  reload: () => Promise<void>;
}

/**
 * Loads `load()` now and every `intervalMs` while the tab is visible, one load at a time; keeps
 * the last good data when a load fails.
 */
export function usePoll<T>(load: () => Promise<T>, intervalMs: number, deps: unknown[] = []): Polled<T> {
  const [state, setState] = useState<{ data: T | null; error: string | null; at: number }>({ data: null, error: null, at: 0 });
  const busy = useRef(false);
  const loadRef = useRef(load);
  loadRef.current = load;

  const reload = async () => {
    if (busy.current) return;
    busy.current = true;
    try {
      const data = await loadRef.current();
      setState({ data, error: null, at: Date.now() });
    } catch (err) {
      setState((s) => ({ ...s, error: errorText(err) }));
    } finally {
      busy.current = false;
    }
  };

  useEffect(() => {
    void reload();
    const timer = setInterval(() => {
      if (document.visibilityState === "visible") void reload();
    }, intervalMs);
    return () => clearInterval(timer);
  }, deps);

  return { ...state, reload };
}
