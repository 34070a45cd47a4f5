/**
 * The root causes of network errors in the words Go's standard library uses, since the reference
 * agent puts them into metric labels (`[error: connection refused]`) that dashboards and alerts
 * match on. Deno reports the same system errors as Rust does (`Connection refused (os error
 * 111)`), client-node's undici by their codes (`connect ECONNREFUSED 10.0.0.1:443`).
 *
 * @module
 */

/** Go's texts for the system errors a connection meets. */
const ERRNO_TEXTS: Record<string, string> = {
  ECONNREFUSED: "connection refused",
  ECONNRESET: "connection reset by peer",
  ECONNABORTED: "software caused connection abort",
  ETIMEDOUT: "connection timed out",
  EHOSTUNREACH: "no route to host",
  ENETUNREACH: "network is unreachable",
  EPIPE: "broken pipe",
  EADDRNOTAVAIL: "cannot assign requested address",
};

/**
 * `text` as Go would word its root cause: a system error by its `strerror` text in lower case,
 * a connection closed before any answer as `EOF`; anything else unchanged.
 */
export function goRootCause(text: string): string {
  const os = /(?:^|: )([^:]+?) \(os error \d+\)$/.exec(text);
  if (os !== null) return os[1].charAt(0).toLowerCase() + os[1].slice(1);
  const code = /\b(E[A-Z]+)\b/.exec(text);
  if (code !== null && ERRNO_TEXTS[code[1]] !== undefined) return ERRNO_TEXTS[code[1]];
  if (/connection closed before (message completed|the response)$/.test(text)) return "EOF";
  return text;
}
