/**
 * One shared timer for every connection's idle and keepalive deadlines (instead of a timer per
 * connection, re-armed on every read). Connections note activity by copying `clock.now`, a
 * coarse time updated on each tick, so the hot path does no timer or clock work at all.
 *
 * A connection that belongs to a server's set of open connections is reached through that set
 * (the wheel holds the set, once): no second per-connection table entry. Others are held one by
 * one.
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
  /** Sets of members (a server's open connections), each ticked whole; dropped once empty. */
  private readonly groups = new Set<ReadonlySet<WheelMember>>();
  private timer: NodeJS.Timeout | undefined;

  add(member: WheelMember): void {
    this.members.add(member);
    this.start();
  }

  /** Ticks every member of `group` from now on, for as long as it has members. */
  addGroup(group: ReadonlySet<WheelMember>): void {
    if (this.groups.has(group)) return;
    this.groups.add(group);
    this.start();
  }

  delete(member: WheelMember): void {
    this.members.delete(member);
    this.stopIfIdle();
  }

  private start(): void {
    if (!this.timer) {
      this.now = Date.now();
      this.timer = setInterval(() => this.onTick(), TICK_MS);
      this.timer.unref();
    }
  }

  private stopIfIdle(): void {
    if (this.members.size === 0 && this.groups.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }

  private onTick(): void {
    this.now = Date.now();
    // forEach, not for-of: the loop runs once per tick over every connection, too rarely to be
    // optimized, and unoptimized for-of makes an iterator result object per connection (garbage
    // that an idle server would make four times a second).
    this.members.forEach(tickMember);
    this.groups.forEach(tickGroup);
    this.stopIfIdle();
  }
}

function tickMember(member: WheelMember): void {
  member.tick(wheel.now);
}

function tickGroup(group: ReadonlySet<WheelMember>, _same: unknown, groups: Set<ReadonlySet<WheelMember>>): void {
  if (group.size === 0) groups.delete(group);
  else group.forEach(tickMember);
}

/** The process-wide wheel. */
export const wheel = new IdleWheel();
