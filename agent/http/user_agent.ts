/**
 * The one `User-Agent` every outbound request of the agent carries (Kubernetes calls, plugin
 * requests, metrics scrapes, the vm-monitor websocket upgrade), so that a peer's access log names
 * the agent and its version the way client-go names its binary.
 *
 * @module
 */

/** The agent's release; bump it with every release. */
export const AGENT_VERSION = "0.1.0";

/** `autoscaler-agent/<version> (deno/<deno version>)`. */
export const USER_AGENT = `autoscaler-agent/${AGENT_VERSION} (deno/${Deno.version.deno})`;
