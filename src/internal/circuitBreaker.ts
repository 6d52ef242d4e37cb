/**
 * A circuit breaker for one tier, read synchronously on the call path and driven by Effect's `Clock`.
 *
 * Closed: calls go through; `threshold` consecutive failures open it. Open: calls are refused until `cooldown`
 * has passed. Then one call (the probe) goes through while the others are still refused: its success closes
 * the breaker, its failure opens it for another `cooldown`.
 *
 * Why not a library: the well-kept ones (cockatiel, opossum) wrap promises and read the wall clock; this one is
 * three fields checked in the tier call that is already being made, and `TestClock` drives it.
 *
 * @internal
 */
export class CircuitBreaker {
  private failures = 0
  private openUntil = 0
  private probing = false

  constructor(
    readonly threshold: number,
    readonly cooldownMillis: number
  ) {}

  /** Whether a call may go now; `true` also claims the probe when the cooldown has passed. */
  allow(now: number): boolean {
    if (this.failures < this.threshold) return true
    if (now < this.openUntil || this.probing) return false
    this.probing = true
    return true
  }

  /** Records a success: the breaker closes. Returns whether it had been open. */
  success(): boolean {
    const wasOpen = this.failures >= this.threshold
    this.failures = 0
    this.probing = false
    return wasOpen
  }

  /** Gives back a probe that ended neither in success nor failure (it was interrupted): the next call probes. */
  release(): void {
    this.probing = false
  }

  /** Records a failure at `now`; the threshold-th consecutive one (or a failed probe) opens the breaker. */
  failure(now: number): void {
    this.failures++
    this.probing = false
    if (this.failures >= this.threshold) this.openUntil = now + this.cooldownMillis
  }

  /** Whether it refuses calls, or lets one probe through: open or half-open. */
  get tripped(): boolean {
    return this.failures >= this.threshold
  }

  /** `"closed"`, `"open"` (refusing calls) or `"half-open"` (the cooldown has passed; the next call probes). */
  state(now: number): "closed" | "open" | "half-open" {
    if (this.failures < this.threshold) return "closed"
    return now < this.openUntil || this.probing ? "open" : "half-open"
  }
}
