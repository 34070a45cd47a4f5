/**
 * The one source of randomness outside `core/`: jitter, restart delays, object-key suffixes.
 *
 * Production code never calls `Math.random()` or `crypto.randomUUID()` itself; it is handed a
 * {@link Random}. The agent gets {@link systemRandom}; the node simulator gets a
 * {@link SeededRandom}, so that one seed replays one run exactly.
 *
 * @example
 * ```ts
 * import { SeededRandom } from "./random.ts";
 * const a = new SeededRandom(7);
 * const b = new SeededRandom(7);
 * console.log(a.int(0, 100) === b.int(0, 100)); // true
 * ```
 *
 * @module
 */

/** Uniform random numbers. */
export interface Random {
  /** A number in [0, 1). */
  float(): number;
  /** A whole number in [min, max). */
  int(min: number, max: number): number;
  /** A version 4 UUID in its usual text form. */
  uuid(): string;
}

/** The process's own randomness. */
export const systemRandom: Random = {
  float: () => Math.random(),
  int: (min, max) => min + Math.floor(Math.random() * (max - min)),
  uuid: () => crypto.randomUUID(),
};

/**
 * A small, fast generator (sfc32) seeded from one integer: not for secrets, only for runs that
 * must repeat. {@link fork} gives an independent stream, so that adding a draw in one part of a
 * simulation does not shift every other part.
 */
export class SeededRandom implements Random {
  #a: number;
  #b: number;
  #c: number;
  #d: number;

  constructor(seed: number) {
    // splitmix32 spreads the seed over the four words, so seeds 1, 2, 3 start far apart.
    let s = seed >>> 0;
    const next = () => {
      s = (s + 0x9e3779b9) >>> 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.#a = next();
    this.#b = next();
    this.#c = next();
    this.#d = next();
    for (let i = 0; i < 12; i++) this.#next();
  }

  #next(): number {
    const t = (((this.#a + this.#b) >>> 0) + this.#d) >>> 0;
    this.#d = (this.#d + 1) >>> 0;
    this.#a = this.#b ^ (this.#b >>> 9);
    this.#b = (this.#c + (this.#c << 3)) >>> 0;
    this.#c = ((this.#c << 21) | (this.#c >>> 11)) >>> 0;
    this.#c = (this.#c + t) >>> 0;
    return t;
  }

  float(): number {
    return this.#next() / 0x1_0000_0000;
  }

  int(min: number, max: number): number {
    return min + Math.floor(this.float() * (max - min));
  }

  uuid(): string {
    const bytes = new Uint8Array(16);
    for (let i = 0; i < 16; i += 4) {
      const word = this.#next();
      bytes[i] = word >>> 24;
      bytes[i + 1] = (word >>> 16) & 0xff;
      bytes[i + 2] = (word >>> 8) & 0xff;
      bytes[i + 3] = word & 0xff;
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${
      hex.slice(20)
    }`;
  }

  /** An independent generator whose seed is drawn from this one. */
  fork(): SeededRandom {
    return new SeededRandom(this.#next());
  }
}
