/**
 * The logging surface the Kubernetes modules accept. It is structural, so the agent's LogTape
 * logger (`agent/log.ts`) fits it without this directory depending on LogTape.
 *
 * @module
 */

/** Leveled, structured logging: fields are attached, never interpolated into the message. */
export interface K8sLog {
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
}

const ignore = () => {};

/** The default when no logger is given. */
export const silentLog: K8sLog = { debug: ignore, info: ignore, warn: ignore, error: ignore };
