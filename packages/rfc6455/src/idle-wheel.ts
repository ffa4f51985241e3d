/**
 * One shared timer for every connection's idle and keepalive deadlines (instead of a timer per
 * connection, re-armed on every read). Connections note activity by copying `clock.now`, a
 * coarse time updated on each tick, so the hot path does no timer or clock work at all.
 */

/** What the wheel calls on a connection; implemented by WebSocketConnection. */
export interface WheelMember {
  /** Called on each tick with the coarse time in ms. */
  tick(now: number): void;
}

const TICK_MS = 250;

class IdleWheel {
  now = Date.now();
  private readonly members = new Set<WheelMember>();
  private timer: NodeJS.Timeout | undefined;

  add(member: WheelMember): void {
    this.members.add(member);
    if (!this.timer) {
      this.now = Date.now();
      this.timer = setInterval(() => this.onTick(), TICK_MS);
      this.timer.unref();
    }
  }

  delete(member: WheelMember): void {
    this.members.delete(member);
    if (this.members.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }

  private onTick(): void {
    const now = (this.now = Date.now());
    for (const member of this.members) member.tick(now);
  }
}

/** The process-wide wheel. */
export const wheel = new IdleWheel();
