/** Switchable request failures of the fake API server. */
import type { Resource } from "./resources.ts";

export type Verb = "get" | "list" | "watch" | "patch";

export interface FailureOptions {
  /** HTTP status to answer with (default 500). Ignored with `garbage`. */
  status?: number;
  /** How many requests fail before the rule expires (default: until cleared). */
  count?: number;
  /** Only requests for this resource. */
  resource?: Resource;
  /** Answer 200 with a truncated, undecodable JSON body instead of an error status. */
  garbage?: boolean;
  message?: string;
  /** Sent as `Retry-After` and as the Status's `details.retryAfterSeconds`. */
  retryAfterSeconds?: number;
}

interface FailureRule {
  verb: Verb;
  resource?: Resource;
  status: number;
  remaining: number;
  garbage: boolean;
  message: string;
  retryAfterSeconds?: number;
}

export type Failure = Pick<FailureRule, "status" | "garbage" | "message" | "retryAfterSeconds">;

export class FailureRules {
  #rules: FailureRule[] = [];

  add(verb: Verb, options: FailureOptions = {}): void {
    this.#rules.push({
      verb,
      resource: options.resource,
      status: options.status ?? 500,
      remaining: options.count ?? Infinity,
      garbage: options.garbage ?? false,
      message: options.message ?? `injected ${verb} failure`,
      retryAfterSeconds: options.retryAfterSeconds,
    });
  }

  /** The failure this request gets, if any; consumes one use of the matching rule. */
  take(verb: Verb, resource: Resource): Failure | undefined {
    const rule = this.#rules.find((r) =>
      r.verb === verb && (r.resource === undefined || r.resource === resource)
    );
    if (rule === undefined) return undefined;
    if (--rule.remaining <= 0) this.#rules = this.#rules.filter((r) => r !== rule);
    return rule;
  }

  clear(): void {
    this.#rules = [];
  }
}
