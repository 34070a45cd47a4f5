/**
 * The per-incarnation connection generation (agent.md §3.6): bumped on every monitor reset and
 * every successful connect, so a request's result is applied only if the connection it was sent
 * on is still the current one (S-1).
 *
 * @module
 */

export class GenerationCounter {
  #value = 0;

  /** Bumps the counter and returns the new value. */
  increment(): number {
    return ++this.#value;
  }

  get(): number {
    return this.#value;
  }
}
