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
/**
 * The most the coarse time moves in one tick. A tick that comes later than that (the event loop
 * was held: a long synchronous handler, a GC pause, a suspended process; or the system clock was
 * set forward) moves it by this much only: time the process could not read is not counted against
 * its peers (fixed bug: a peer that kept sending was closed as idle, and one whose pong had come,
 * still unread, was aborted by its keepalive, after the loop was held longer than the timeout).
 */
const MAX_STEP_MS = 2 * TICK_MS;

class IdleWheel {
  /**
   * The coarse time (ms): Date.now() at first, then moved on each tick by the time since the last
   * one (at most MAX_STEP_MS), and not at all while the wheel is stopped.
   */
  now = Date.now();
  /** Date.now() at the last tick (or start). */
  private wall = this.now;
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
      // The coarse time stands still while the wheel is stopped, and goes on from where it stood:
      // a connection made meanwhile notes that time as its last activity. (Fixed bug: `now` was set
      // to Date.now() here, after that connection had noted the time the wheel stopped, and once
      // the wheel had been stopped longer than idleTimeout, a new connection that sent nothing in
      // its first 250 ms was closed as idle.)
      this.wall = Date.now();
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
    const wall = Date.now();
    const step = wall - this.wall;
    this.wall = wall;
    // (Never backwards: a system clock set back does not move it.)
    if (step > 0) this.now += Math.min(step, MAX_STEP_MS);
    // What the peers sent since the loop last polled (while it was held, or while this timer
    // waited behind other callbacks) is still unread: timers run before the loop polls for it.
    // The members are judged in the check phase, after that poll has read it. Not unref'd: an
    // unref'd immediate let the loop block in that poll until some other event (up to a whole
    // tick), and a loop then held in it ran the judgement without polling again. (Fixed bug: only
    // a tick later than MAX_STEP_MS waited, and for such a poll; a pong that came while the loop
    // was held for 300 ms was unread when the keepalive was judged, and its live peer aborted.)
    setImmediate(this.tickAll);
  }

  private readonly tickAll = (): void => {
    // forEach, not for-of: the loop runs once per tick over every connection, too rarely to be
    // optimized, and unoptimized for-of makes an iterator result object per connection (garbage
    // that an idle server would make four times a second).
    this.members.forEach(tickMember);
    this.groups.forEach(tickGroup);
    this.stopIfIdle();
    // A member's tick that threw (an `error` listener of the application's, called as a keepalive
    // ping crossed maxBufferedAmount) is rethrown once every member has had its tick. (Fixed bug:
    // the exception left the loop, and every member after it waited a whole tick.)
    const failed = tickFailure;
    if (failed !== undefined) {
      tickFailure = undefined;
      throw failed.error;
    }
  };
}

/** The first exception a member's tick threw during the tick under way. */
let tickFailure: { error: unknown } | undefined;

function tickMember(member: WheelMember): void {
  try {
    member.tick(wheel.now);
  } catch (error) {
    tickFailure ??= { error };
  }
}

function tickGroup(group: ReadonlySet<WheelMember>, _same: unknown, groups: Set<ReadonlySet<WheelMember>>): void {
  if (group.size === 0) groups.delete(group);
  else group.forEach(tickMember);
}

/** The process-wide wheel. */
export const wheel = new IdleWheel();

/**
 * A deadline on what a peer sends: `fn` runs `ms` (through timerDelay()) later, once the loop has
 * polled again. After the event loop was held, timers run before what came meanwhile is read, and
 * what the peer sent in time (a close frame, a 101) may be waiting there. (Fixed bug: such a close
 * was recorded 1006, such a handshake failed with WS_HANDSHAKE_TIMEOUT.) Unref'd; clearTimeout()
 * before it fires cancels it.
 */
export function peerDeadline(fn: () => void, ms: number): NodeJS.Timeout {
  const timer = setTimeout(() => setImmediate(fn), timerDelay(ms));
  timer.unref();
  return timer;
}

/** Longest delay setTimeout takes (2^31 - 1 ms, about 24.8 days); Node turns a longer one into 1 ms. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * A delay in ms as setTimeout (and Node's server timeouts) take it: a whole number, at most
 * 2^31 - 1. A longer one (Infinity included) means "no timeout": Node would fire it after 1 ms
 * (with a TimeoutOverflowWarning), so it waits about 24.8 days instead.
 */
export function timerDelay(ms: number): number {
  return ms >= MAX_TIMER_MS ? MAX_TIMER_MS : ms > 0 ? Math.ceil(ms) : 0;
}

/**
 * An answer written to a peer that may never take it (an HTTP refusal larger than the socket's
 * buffers or the stream's flow-control window): when `stream` still holds unwritten bytes,
 * `giveUp` runs after `ms` (see timerDelay) unless the stream has closed by then.
 */
export function giveUpUntaken(stream: { readonly writableLength: number; readonly destroyed: boolean; once(event: 'close', listener: () => void): unknown }, ms: number, giveUp: () => void): void {
  if (stream.writableLength === 0 || stream.destroyed) return;
  const timer = setTimeout(giveUp, timerDelay(ms));
  timer.unref();
  stream.once('close', () => clearTimeout(timer));
}
