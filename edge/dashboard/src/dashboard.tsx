import { render, useEffect, useState } from "hono/jsx/dom";
import { Keys } from "./keys";
import { Login } from "./login";
import { Pool } from "./pool";
import { session } from "./session";
import { Usage } from "./usage";

const TABS = [
  { id: "pool", label: "Pool" },
  { id: "keys", label: "Keys" },
  { id: "usage", label: "Usage" },
] as const;
type Tab = (typeof TABS)[number]["id"];

function tabFromHash(): Tab {
  const h = location.hash.slice(1);
  return TABS.some((t) => t.id === h) ? (h as Tab) : "pool";
}

/** /dashboard: the pool, the keys and the usage, behind the admin token. */
function Dashboard() {
  const [token, setToken] = useState<string | null>(session.adminToken());
  const [tab, setTab] = useState<Tab>(tabFromHash());

  useEffect(() => {
    const onHash = () => setTab(tabFromHash());
    addEventListener("hashchange", onHash);
    return () => removeEventListener("hashchange", onHash);
  }, []);

  if (!token) {
    return (
      <Login
        onToken={(t) => {
          session.setAdminToken(t);
          setToken(t);
        }}
      />
    );
  }
  const signOut = () => {
    session.setAdminToken(null);
    setToken(null);
  };
  return (
    <>
      <header class="top">
        <strong class="brand">seventy</strong>
        <nav aria-label="Dashboard">
          {TABS.map((t) => (
            <a href={`#${t.id}`} aria-current={tab === t.id ? "page" : undefined}>
              {t.label}
            </a>
          ))}
          <a href="/playground">Playground</a>
        </nav>
        <button type="button" class="secondary" onClick={signOut}>
          Sign out
        </button>
      </header>
      <main>
        {tab === "pool" && <Pool token={token} />}
        {tab === "keys" && <Keys token={token} />}
        {tab === "usage" && <Usage token={token} />}
      </main>
    </>
  );
}

render(<Dashboard />, document.getElementById("app")!);
