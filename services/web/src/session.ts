/**
 * The browser's session with the backend. The API token never goes into a URL or into browser storage:
 * it is sent once, in a header, to `POST /auth/session`, which answers with an HttpOnly, SameSite=Strict
 * cookie (the page never sees it; the browser attaches it to fetches, the event stream and downloads) and
 * a CSRF token, kept in memory and sent as `X-CSRF-Token` on mutating requests.
 * The link `flowerbed up` prints carries a one-time login code in the fragment (`#login=…`, never sent to
 * any server), traded here for a session the same way.
 */

export const CSRF_HEADER = "X-CSRF-Token";

interface SessionInfo {
  authenticated: boolean;
  csrf_token?: string | null;
  reads_require_auth?: boolean;
}

let csrf: string | null = null;
let signedIn = false;

export function isSignedIn(): boolean {
  return signedIn;
}

export function csrfToken(): string | null {
  return csrf;
}

function remember(info: SessionInfo | null): void {
  signedIn = Boolean(info?.authenticated);
  csrf = signedIn ? (info?.csrf_token ?? null) : null;
  document.dispatchEvent(new CustomEvent("flowerbed:session"));
}

async function post(headers: Record<string, string>, body?: unknown): Promise<boolean> {
  try {
    const response = await fetch("/auth/session", {
      method: "POST",
      credentials: "same-origin",
      headers: { Accept: "application/json", ...headers, ...(body !== undefined ? { "Content-Type": "application/json" } : {}) },
      body: body !== undefined ? JSON.stringify(body) : undefined,
    });
    if (!response.ok) return false;
    remember((await response.json()) as SessionInfo);
    return true;
  } catch {
    return false;
  }
}

/** Ask the backend whether the cookie (if any) is a live session; learns its CSRF token. */
export async function refreshSession(): Promise<void> {
  try {
    const response = await fetch("/auth/session", { credentials: "same-origin", headers: { Accept: "application/json" } });
    remember(response.ok ? ((await response.json()) as SessionInfo) : null);
  } catch {
    remember(null);
  }
}

/** Trade the pasted API token (in a header) for a session; false if the backend rejects it. */
export function signInWithToken(token: string): Promise<boolean> {
  return post({ Authorization: `Bearer ${token}` });
}

export async function signOut(): Promise<void> {
  try {
    await fetch("/auth/session", { method: "DELETE", credentials: "same-origin", headers: csrf ? { [CSRF_HEADER]: csrf } : {} });
  } finally {
    remember(null);
  }
}

/**
 * Sign in from what the address bar carries, then take it out of the address bar (and so out of history):
 * `#login=<code>` (the one-time code `flowerbed up` prints) or, from links of older versions, `?token=`.
 */
export async function signInFromUrl(): Promise<void> {
  try {
    localStorage.removeItem("flowerbed.token"); // older versions kept the token there
  } catch {
    /* storage unavailable: nothing stored either */
  }
  const url = new URL(window.location.href);
  const code = /^#login=([^&]+)/.exec(url.hash)?.[1];
  const legacyToken = url.searchParams.get("token");
  if (code === undefined && legacyToken === null) return;
  url.searchParams.delete("token");
  history.replaceState(history.state, "", url.pathname + url.search + (code !== undefined ? "#/" : url.hash));
  if (code !== undefined) await post({}, { code: decodeURIComponent(code) });
  else if (legacyToken) await signInWithToken(legacyToken);
}
